"""NonFiniteLossHook: a NaN/inf loss stops the run with one line naming the iteration, or skips the step."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from mmcv.runner import HOOKS, OptimizerHook
from torch import nn

from mmcv_custom.cli.errors import UserError
from mmcv_custom.nonfinite_loss import NonFiniteLossHook


def runner_after_forward(loss: float, iteration: int = 6, last_ckpt: str | None = None):
    """A runner as mmcv leaves it after train_step: outputs with the loss tensor and the logged (reduced) value."""
    model = nn.Linear(2, 1)
    loss_tensor = model(torch.ones(1, 2)).sum() * 0 + loss
    hook_msgs = {'last_finite_ckpt': last_ckpt} if last_ckpt else {}
    return SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), iter=iteration,
                           outputs={'loss': loss_tensor, 'log_vars': {'loss': float(loss)}},
                           meta={'hook_msgs': hook_msgs}, logger=logging.getLogger('test'))


def test_registered_under_its_name():
    assert HOOKS.get('NonFiniteLossHook') is NonFiniteLossHook


@pytest.mark.parametrize('loss', [float('nan'), float('inf')])
def test_stop_names_the_iteration_and_the_kept_checkpoint(loss):
    runner = runner_after_forward(loss, iteration=6, last_ckpt='work/iter_4.pth')
    with pytest.raises(UserError) as error:
        NonFiniteLossHook().after_train_iter(runner)
    assert str(error.value) == (f'iteration 7: the loss is {loss} (not finite), training stopped; the last finite '
                                'checkpoint is work/iter_4.pth (lower optimizer.lr, or set nonfinite_loss=skip to '
                                'skip such steps)')


def test_finite_loss_passes_untouched():
    runner = runner_after_forward(0.5)
    loss = runner.outputs['loss']
    NonFiniteLossHook().after_train_iter(runner)
    assert runner.outputs['loss'] is loss


def test_skip_leaves_the_weights_unchanged_then_stops_after_max_skips():
    hook = NonFiniteLossHook(action='skip', max_skips=2)
    optimizer_hook = OptimizerHook()
    runner = runner_after_forward(float('nan'))
    before = [p.detach().clone() for p in runner.model.parameters()]
    for _ in range(2):
        runner.outputs = runner_after_forward(float('nan')).outputs
        hook.after_train_iter(runner)
        optimizer_hook.after_train_iter(runner)   # what runs next: backward and step
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))
    runner.outputs = runner_after_forward(float('nan')).outputs
    with pytest.raises(UserError, match='^iteration 7: the loss is nan'):
        hook.after_train_iter(runner)


def test_a_finite_step_resets_the_skip_count():
    hook = NonFiniteLossHook(action='skip', max_skips=1)
    hook.after_train_iter(runner_after_forward(float('nan')))
    hook.after_train_iter(runner_after_forward(1.0))
    hook.after_train_iter(runner_after_forward(float('nan')))   # one in a row again: skipped, not stopped
    assert hook.skipped == 1


def test_off_and_bad_arguments():
    runner = runner_after_forward(float('nan'))
    NonFiniteLossHook(action='off').after_train_iter(runner)
    with pytest.raises(ValueError, match="action must be one of stop, skip, off, got 'halt'"):
        NonFiniteLossHook(action='halt')
