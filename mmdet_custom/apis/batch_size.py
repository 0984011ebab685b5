"""The global batch of a training run, gradient accumulation, and ``--auto-scale-lr`` (used by ``train.py``).

The rule (README, "Fewer GPUs than the recipe"): one optimizer step sees

    global batch = processes (GPUs) x data.samples_per_gpu x cumulative_iters

where ``cumulative_iters`` is N of ``optimizer_config = dict(type='GradientCumulativeOptimizerHook',
cumulative_iters=N)`` (1 without accumulation). Each config states the global batch its learning rate was set for
in ``auto_scale_lr.base_batch_size`` (the original's "8 GPUs x 2 images", "total batch 64", ...; ``None`` where the
original does not say how many GPUs trained it). ``--auto-scale-lr`` (or ``auto_scale_lr.enable=True``) scales
``optimizer.lr`` linearly by global batch / base batch, accumulation included: mmdet 2.28's own scaling counts
GPUs x samples_per_gpu only, and silently does nothing without a base batch size.

mmdet 2.28 cannot combine accumulation with ``fp16``: with ``fp16`` set it builds ``Fp16OptimizerHook(
**optimizer_config)``, which does not take ``type`` / ``cumulative_iters``. :func:`use_gradient_accumulation` turns
that pair into mmcv's ``GradientCumulativeFp16OptimizerHook`` (same loss scaling, same accumulation).
"""
from __future__ import annotations

from mmcv_custom.cli.errors import UserError

ACCUMULATING_HOOKS = ('GradientCumulativeOptimizerHook', 'GradientCumulativeFp16OptimizerHook')


def cumulative_iters(cfg) -> int:
    """N of a gradient-accumulating ``optimizer_config`` (1 without accumulation); a bad N is a :class:`UserError`."""
    optimizer_config = cfg.get('optimizer_config') or {}
    if optimizer_config.get('type') not in ACCUMULATING_HOOKS:
        return 1
    value = optimizer_config.get('cumulative_iters', 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f'config field optimizer_config.cumulative_iters: expected a positive integer, got {value!r}')
    return value


def samples_per_gpu(cfg) -> int:
    """Images per process and iteration (``data.train_dataloader`` first, as mmdet's ``compat_cfg`` reads it)."""
    return int(cfg.data.get('train_dataloader', {}).get('samples_per_gpu', cfg.data.get('samples_per_gpu', 1)))


def global_batch_size(cfg, world_size: int) -> int:
    """Images per optimizer step: processes x samples_per_gpu x cumulative_iters."""
    return world_size * samples_per_gpu(cfg) * cumulative_iters(cfg)


def use_gradient_accumulation(cfg) -> str | None:
    """Check ``optimizer_config``'s accumulation and make it work with ``fp16``; returns a line for the log (None
    without accumulation)."""
    n = cumulative_iters(cfg)
    if n == 1 and (cfg.get('optimizer_config') or {}).get('type') not in ACCUMULATING_HOOKS:
        return None
    fp16 = cfg.get('fp16')
    if fp16 is not None and cfg.optimizer_config.get('type') == 'GradientCumulativeOptimizerHook':
        cfg.optimizer_config = dict(cfg.optimizer_config, **fp16, type='GradientCumulativeFp16OptimizerHook')
        cfg.fp16 = None   # mmdet would otherwise wrap it into an Fp16OptimizerHook a second time
    return (f'gradient accumulation: {cfg.optimizer_config["type"]} adds up the gradients of {n} iterations per '
            'optimizer step')


def apply_auto_scale_lr(cfg, world_size: int, config_path: str, logger) -> None:
    """Scale ``optimizer.lr`` by global batch / ``auto_scale_lr.base_batch_size`` (linear scaling rule), once: mmdet's
    own scaling is switched off afterwards. No base batch size is a :class:`UserError`."""
    auto = cfg.get('auto_scale_lr') or {}
    base = auto.get('base_batch_size')
    if isinstance(base, bool) or not isinstance(base, int) or base < 1:
        stated = 'states none' if base is None else f'is {base!r}, not a positive integer'
        raise UserError(f'--auto-scale-lr: auto_scale_lr.base_batch_size of {config_path} {stated} (the global batch '
                        'its lr was set for); give it with --cfg-options auto_scale_lr.base_batch_size=N')
    batch = global_batch_size(cfg, world_size)
    old_lr = cfg.optimizer.lr
    cfg.optimizer.lr = old_lr * batch / base
    logger.info(f'--auto-scale-lr: global batch {batch} ({world_size} process(es) x {samples_per_gpu(cfg)} images x '
                f'{cumulative_iters(cfg)} accumulated), base batch {base}: lr {old_lr:g} -> {cfg.optimizer.lr:g}')
    cfg.auto_scale_lr = dict(auto, enable=False)
