"""EMA hooks keep their averages when a run is resumed (mmdet's ``BaseEMAHook`` family, e.g. the Cascade L/XL 3x
configs' ``ExpMomentumEMAHook``, and mmcv's ``EMAHook``).

Symptom fixed: resuming an EMA run (``--resume-from``, ``resume_from`` in the config, ``--auto-resume``) lost the
EMA state. mmdet's ``train_detector`` resumes before ``runner.run``; the hook only registers its ``ema_*`` buffers in
``before_run``, after that, so mmcv's non-strict load drops the checkpoint's ``ema_*`` tensors ("unexpected keys")
and the hook then starts its averages again from the loaded weights. Upstream's only way out is to repeat the
checkpoint path in the hook's own ``resume_from`` (which resumes the whole runner a second time); nobody does.

Fix: the runner remembers the checkpoint file it resumed from (``BaseRunner.resume``), and an EMA hook without its
own ``resume_from`` copies that file's ``ema_*`` tensors into the buffers it has just registered (``before_run``),
with one log line. A checkpoint without them (a run trained without EMA) leaves the fresh averages, also logged.
"""
from __future__ import annotations

import functools

RESUMED_ATTR = '_internimage_resumed_from'


def _restore_ema_buffers(hook, runner) -> None:
    """Copy the ``ema_*`` tensors of the checkpoint ``runner`` resumed from into ``hook``'s registered buffers."""
    path = getattr(runner, RESUMED_ATTR, None)
    if path is None or getattr(hook, 'checkpoint', None) is not None:  # not resumed, or the hook resumes itself
        return
    from mmcv.runner import CheckpointLoader

    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = {key[len('module.'):] if key.startswith('module.') else key: value
                  for key, value in state_dict.items()}
    restored = 0
    for buffer_name in hook.param_ema_buffer.values():
        if buffer_name in state_dict:
            hook.model_buffers[buffer_name].data.copy_(state_dict[buffer_name])
            restored += 1
    what = (f'restored {restored} of {len(hook.param_ema_buffer)} ema_* buffers' if restored else
            'holds no ema_* buffers (trained without EMA): the averages start from its weights')
    runner.logger.info(f'{type(hook).__name__}: {path} {what}')


def _patch_before_run(hook_cls: type) -> None:
    if getattr(hook_cls.before_run, '_restores_ema', False):
        return
    original = hook_cls.before_run

    @functools.wraps(original)
    def before_run(self, runner):
        original(self, runner)
        _restore_ema_buffers(self, runner)

    before_run._restores_ema = True
    hook_cls.before_run = before_run


def _patch_resume(runner_cls: type) -> None:
    original = runner_cls.__dict__['resume']
    if getattr(original, '_records_path', False):
        return

    @functools.wraps(original)
    def resume(self, checkpoint, *args, **kwargs):
        result = original(self, checkpoint, *args, **kwargs)
        if isinstance(checkpoint, str):
            setattr(self, RESUMED_ATTR, checkpoint)
        return result

    resume._records_path = True
    runner_cls.resume = resume


def patch_ema_resume() -> None:
    """Apply the fix (idempotent): the runner records its resume file, the EMA hooks restore their buffers."""
    from mmcv.runner import BaseRunner, IterBasedRunner
    from mmcv.runner.hooks.ema import EMAHook

    for runner_cls in (BaseRunner, IterBasedRunner):   # IterBasedRunner has a resume() of its own
        _patch_resume(runner_cls)
    _patch_before_run(EMAHook)
    try:
        from mmdet.core.hook.ema import BaseEMAHook
    except ImportError:  # mmcv without mmdet: only mmcv's hook
        return
    _patch_before_run(BaseEMAHook)
