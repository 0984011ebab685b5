"""mmcv_custom.ema_resume: a resumed EMA run gets its averages back (mmdet/mmcv re-start them from the loaded weights,
because the runner resumes before the hook has registered its ``ema_*`` buffers)."""
from __future__ import annotations

import logging

import pytest
import torch
from mmcv.runner import IterBasedRunner
from mmcv.runner.hooks import EMAHook
from mmdet.core.hook import ExpMomentumEMAHook
from torch import nn

import mmdet_custom  # noqa: F401  (applies patch_ema_resume)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def train_step(self, data, optimizer):
        loss = self.linear(data).sum()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data))


def make_runner(tmp_path, hook) -> IterBasedRunner:
    model = Toy()
    runner = IterBasedRunner(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), work_dir=str(tmp_path),
                             logger=logging.getLogger('test_ema_resume'), max_iters=10)
    runner.register_hook(hook, priority=49)
    return runner


WEIGHTS = {'linear.weight': torch.tensor([[1.0, 2.0]]), 'linear.bias': torch.tensor([3.0])}
AVERAGES = {'ema_linear_weight': torch.tensor([[-5.0, -6.0]]), 'ema_linear_bias': torch.tensor([-7.0])}


def save_run(tmp_path, with_ema: bool) -> str:
    path = tmp_path / 'iter_3.pth'
    optimizer = torch.optim.SGD(Toy().parameters(), lr=0.1)
    torch.save(dict(meta=dict(epoch=1, iter=3), state_dict={**WEIGHTS, **(AVERAGES if with_ema else {})},
                    optimizer=optimizer.state_dict()), path)
    return str(path)


HOOKS = [lambda: ExpMomentumEMAHook(momentum=0.5), lambda: EMAHook(momentum=0.5)]


@pytest.mark.parametrize('make_hook', HOOKS, ids=['mmdet-ExpMomentumEMAHook', 'mmcv-EMAHook'])
def test_resumed_run_restores_the_checkpoints_averages(tmp_path, make_hook, caplog):
    runner = make_runner(tmp_path, make_hook())
    runner.resume(save_run(tmp_path, with_ema=True))
    with caplog.at_level(logging.INFO, logger='test_ema_resume'):
        runner.call_hook('before_run')
    buffers = dict(runner.model.named_buffers())
    for name, value in AVERAGES.items():
        torch.testing.assert_close(buffers[name], value)   # not the loaded weights
    torch.testing.assert_close(runner.model.linear.weight.data, WEIGHTS['linear.weight'])
    assert runner.iter == 3
    assert any('restored 2 of 2 ema_* buffers' in record.getMessage() for record in caplog.records)


def test_a_checkpoint_without_averages_starts_them_from_its_weights(tmp_path, caplog):
    runner = make_runner(tmp_path, ExpMomentumEMAHook(momentum=0.5))
    runner.resume(save_run(tmp_path, with_ema=False))
    with caplog.at_level(logging.INFO, logger='test_ema_resume'):
        runner.call_hook('before_run')
    torch.testing.assert_close(runner.model.ema_linear_weight, WEIGHTS['linear.weight'])
    assert any('holds no ema_* buffers' in record.getMessage() for record in caplog.records)


def test_a_fresh_run_is_untouched(tmp_path):
    runner = make_runner(tmp_path, ExpMomentumEMAHook(momentum=0.5))
    runner.call_hook('before_run')
    torch.testing.assert_close(runner.model.ema_linear_weight, runner.model.linear.weight.data)
