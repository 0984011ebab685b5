"""Stop (or skip the step) when the training loss is not finite, instead of training on NaN for ever.

mmcv's runner carries on when the loss becomes NaN or inf: every later step is NaN, and checkpoint rotation then
deletes the last good checkpoints. ``NonFiniteLossHook`` (registered in mmcv's HOOKS; ``train.py`` adds it to every
run) looks at the iteration's loss after the forward pass and before the optimizer hook (priority ``HIGH`` runs
before the optimizer's ``ABOVE_NORMAL``):

* ``action='stop'`` (default): the run stops with one line naming the iteration and the loss
  (:class:`~mmcv_custom.cli.errors.UserError`, exit status 1); the weights are those of the last finite step;
* ``action='skip'``: the step's update is skipped (no gradient reaches the model), with a warning; after
  ``max_skips`` consecutive skipped steps the run stops as with ``'stop'``.

The config field ``nonfinite_loss`` chooses: ``'stop'``, ``'skip'``, or ``'off'`` (mmcv's behaviour). The loss looked
at is the logged one (``log_vars['loss']``), which mmdet averages over all processes, so every rank decides the same.
"""
from __future__ import annotations

import math

import torch
from mmcv.runner import HOOKS, Hook

from .cli.errors import UserError

ACTIONS = ('stop', 'skip', 'off')


def loss_value(outputs: dict) -> float | None:
    """The iteration's total loss as a float (the logged, all-rank average when there is one)."""
    log_vars = outputs.get('log_vars') or {}
    value = log_vars.get('loss', outputs.get('loss'))
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item() if value.numel() else None
    return float(value) if isinstance(value, (int, float)) else None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop the run (``action='stop'``) or skip the step (``action='skip'``) on a NaN or infinite loss."""

    def __init__(self, action: str = 'stop', max_skips: int = 10) -> None:
        if action not in ACTIONS:
            raise ValueError(f'action must be one of {", ".join(ACTIONS)}, got {action!r}')
        if not isinstance(max_skips, int) or max_skips < 1:
            raise ValueError(f'max_skips must be a positive integer, got {max_skips!r}')
        self.action = action
        self.max_skips = max_skips
        self.skipped = 0

    def _stop(self, runner, value: float) -> None:
        last = ((runner.meta or {}).get('hook_msgs', {}).get('last_finite_ckpt')
                or (runner.meta or {}).get('hook_msgs', {}).get('last_ckpt'))
        kept = f'; the last finite checkpoint is {last}' if last else ''
        raise UserError(f'iteration {runner.iter + 1}: the loss is {value} (not finite), training stopped{kept} '
                        '(lower optimizer.lr, or set nonfinite_loss=skip to skip such steps)')

    def after_train_iter(self, runner) -> None:
        if self.action == 'off' or not isinstance(runner.outputs, dict):
            return
        value = loss_value(runner.outputs)
        if value is None or math.isfinite(value):
            self.skipped = 0
            return
        if self.action == 'stop' or self.skipped >= self.max_skips:
            self._stop(runner, value)
        self.skipped += 1
        runner.logger.warning(f'iteration {runner.iter + 1}: the loss is {value} (not finite): step skipped '
                              f'({self.skipped} in a row, at most {self.max_skips})')
        # The optimizer hook calls outputs['loss'].backward() then step(): a loss tied to no parameter leaves every
        # gradient None after its zero_grad(), and torch optimizers leave parameters without a gradient untouched.
        runner.outputs['loss'] = torch.zeros((), requires_grad=True)
