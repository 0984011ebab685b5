"""mmdet_custom.apis.batch_size: the global batch, ``--auto-scale-lr`` with accumulation, and gradient accumulation
with the layer-decay constructor (and its fp16 variant): N=2 at batch 1 trains exactly as batch 2."""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from mmcv import Config
from mmcv.runner import HOOKS, IterBasedRunner, build_optimizer
from mmcv.utils import build_from_cfg
from torch import nn

import mmdet_custom  # noqa: F401  (registers InternImage and the layer-decay constructor)
from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.batch_size import (
    apply_auto_scale_lr,
    cumulative_iters,
    global_batch_size,
    use_gradient_accumulation,
)
from mmdet_custom.models.backbones.intern_image import InternImage

LOGGER = logging.getLogger('test_batch_size')


def config(samples_per_gpu=2, optimizer_config=None, base=16, **extra) -> Config:
    return Config(dict(data=dict(samples_per_gpu=samples_per_gpu), optimizer=dict(type='AdamW', lr=1e-4),
                       optimizer_config=optimizer_config or dict(grad_clip=None),
                       auto_scale_lr=dict(enable=False, base_batch_size=base), **extra))


ACCUMULATE_4 = dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4)


def test_the_global_batch_counts_processes_images_and_accumulation():
    assert global_batch_size(config(), world_size=8) == 16
    assert global_batch_size(config(optimizer_config=ACCUMULATE_4), world_size=2) == 16
    cfg = config(samples_per_gpu=2)
    cfg.data.train_dataloader = dict(samples_per_gpu=3)   # mmdet's compat_cfg reads this one first
    assert global_batch_size(cfg, world_size=1) == 3


@pytest.mark.parametrize('value', [0, -2, 1.5, '2', True])
def test_a_bad_cumulative_iters_is_refused(value):
    with pytest.raises(UserError, match='optimizer_config.cumulative_iters: expected a positive integer'):
        cumulative_iters(config(optimizer_config=dict(type='GradientCumulativeOptimizerHook', cumulative_iters=value)))


def test_auto_scale_lr_scales_by_the_global_batch_with_accumulation():
    # 2 processes x 2 images x 4 accumulated = 16: the recipe's batch, the lr unchanged; without accumulation 4/16
    cfg = config(optimizer_config=ACCUMULATE_4)
    apply_auto_scale_lr(cfg, 2, 'cfg.py', LOGGER)
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    cfg = config()
    apply_auto_scale_lr(cfg, 2, 'cfg.py', LOGGER)
    assert cfg.optimizer.lr == pytest.approx(0.25e-4)
    assert cfg.auto_scale_lr.enable is False   # mmdet's own scaling (without accumulation) must not scale again


@pytest.mark.parametrize('base', [None, 0, 'sixteen'])
def test_auto_scale_lr_without_a_base_batch_is_one_line(base):
    with pytest.raises(UserError, match=r'--auto-scale-lr: auto_scale_lr.base_batch_size of cfg.py (states none|is)'):
        apply_auto_scale_lr(config(base=base), 1, 'cfg.py', LOGGER)


def test_fp16_with_accumulation_becomes_the_fp16_accumulating_hook():
    cfg = config(optimizer_config=dict(ACCUMULATE_4, grad_clip=None), fp16=dict(loss_scale=512.))
    line = use_gradient_accumulation(cfg)
    assert cfg.optimizer_config == dict(type='GradientCumulativeFp16OptimizerHook', cumulative_iters=4,
                                        grad_clip=None, loss_scale=512.)
    assert cfg.fp16 is None and '4 iterations' in line
    hook = build_from_cfg(cfg.optimizer_config, HOOKS)
    assert type(hook).__name__ == 'GradientCumulativeFp16OptimizerHook' and hook.cumulative_iters == 4
    assert use_gradient_accumulation(config()) is None


# ---------------------------------------------------------------------------------------------------------------
# Equivalence: N=2 at batch 1 == batch 2, through mmcv's runner, the layer-decay constructor and a BN-free model
# ---------------------------------------------------------------------------------------------------------------

class TinyRegressor(nn.Module):
    """A tiny InternImage (LayerNorm, no BatchNorm: every sample is computed on its own) and a linear head; the loss
    is the mean over the batch, so a batch of 2 is the mean of two batches of 1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = InternImage(core_op='DCNv3', channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8),
                                    drop_path_rate=0.0, out_indices=(3,))
        self.head = nn.Linear(128, 1)

    def train_step(self, data, optimizer):
        features = self.backbone(data['img'])[-1].mean(dim=(2, 3))
        loss = ((self.head(features).squeeze(-1) - data['target']) ** 2).mean()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data['img']))


SAMPLES = [dict(img=torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i), dtype=torch.float64),
                target=torch.tensor(float(i), dtype=torch.float64)) for i in range(4)]
OPTIMIZER = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4,
                 constructor='CustomLayerDecayOptimizerConstructor',
                 paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.8, depths=[1, 1, 1, 1]))


def train(tmp_path, batch_size: int, optimizer_hook: dict) -> dict[str, torch.Tensor]:
    """Train ``TinyRegressor`` on the 4 samples in order; returns its parameters."""
    model = TinyRegressor().double()
    optimizer = build_optimizer(model, copy.deepcopy(OPTIMIZER))
    assert len({group['lr'] for group in optimizer.param_groups}) > 2   # the layer decay is in play
    loader = torch.utils.data.DataLoader(SAMPLES, batch_size=batch_size, shuffle=False)
    runner = IterBasedRunner(model, optimizer=optimizer, work_dir=str(tmp_path), logger=LOGGER, meta={},
                             max_iters=len(SAMPLES) // batch_size)
    runner.register_optimizer_hook(build_from_cfg(optimizer_hook, HOOKS))
    runner.run([loader], [('train', runner.max_iters)])
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@pytest.mark.parametrize('fp16', [False, True], ids=['fp32', 'fp16-hook'])
def test_accumulating_2_batches_of_1_equals_batch_2(tmp_path, fp16):
    # fp16: the hooks train_detector builds for `fp16=dict(loss_scale=...)`; on the CPU torch's GradScaler is
    # disabled, so this checks that the accumulating fp16 hook steps as the plain one does
    cfg = config(optimizer_config=dict(type='GradientCumulativeOptimizerHook', cumulative_iters=2, grad_clip=None),
                 **(dict(fp16=dict(loss_scale=512.)) if fp16 else {}))
    use_gradient_accumulation(cfg)
    reference_hook = dict(type='Fp16OptimizerHook', loss_scale=512., distributed=False) if fp16 else \
        dict(type='OptimizerHook', grad_clip=None)
    accumulating_hook = dict(cfg.optimizer_config, distributed=False) if fp16 else dict(cfg.optimizer_config)
    reference = train(tmp_path / 'batch2', 2, reference_hook)
    accumulated = train(tmp_path / 'accumulated', 1, accumulating_hook)
    initial = dict(TinyRegressor().double().named_parameters())
    assert any((reference[name] - initial[name]).abs().max() > 1e-4 for name in reference)   # it did train
    for name, value in reference.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-9, atol=1e-12, msg=name)
