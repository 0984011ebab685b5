"""Patches for mmcv 1.7 / mmdet 2.28 on today's torch (2.x), applied when ``mmcv_custom`` is imported.

Each patch fixes one named symptom and changes nothing else of mmcv's or mmdet's behaviour; each is covered by a test
in ``tests/mmcv_custom/test_torch_compat.py`` showing the symptom on the unpatched stack and the fix. Patches are
idempotent. Distributed runs without CUDA are patched separately and only on demand
(``mmdet_custom.apis.distributed``), as is mmdeploy
(``mmdet_custom.deploy.mmdeploy_compat``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable


def _patch_get_stream_int_device() -> None:
    """Symptom: ``AttributeError: 'int' object has no attribute 'type'`` in ``mmcv.parallel.scatter``.

    mmcv 1.7 calls ``torch.nn.parallel._functions._get_stream(device_id)`` with an int GPU index; since
    torch 2.1 that function takes a ``torch.device``.
    """
    import torch
    from mmcv.parallel import _functions as mmcv_functions
    from torch.nn.parallel._functions import _get_stream as torch_get_stream

    if getattr(mmcv_functions._get_stream, '_internimage_patched', False):
        return

    def _get_stream(device):
        if isinstance(device, int):
            device = torch.device('cuda', device)
        return torch_get_stream(device)

    _get_stream._internimage_patched = True
    mmcv_functions._get_stream = _get_stream


def _patch_ddp_replicated_tensor_module() -> None:
    """Symptom: ``AttributeError: 'MMDistributedDataParallel' object has no attribute
    '_use_replicated_tensor_module'`` on the first distributed training step.

    mmcv 1.7's ``MMDistributedDataParallel._run_ddp_forward`` reads this attribute, which torch 1.12/1.13's DDP
    set and torch 2.0 removed. False is what torch 1.13 used by default (no replicated-tensor module).
    """
    from mmcv.parallel import MMDistributedDataParallel

    if not hasattr(MMDistributedDataParallel, '_use_replicated_tensor_module'):
        MMDistributedDataParallel._use_replicated_tensor_module = False


def full_pickle_kwargs(load: Callable) -> dict:
    """``{'weights_only': False}`` if ``load`` (torch's ``torch.load``, or a wrapper passing keywords on) takes the
    argument, else ``{}``: a replacement written for the pre-2.6 signature ``load(f, map_location=None)`` must not
    be given a keyword it does not know (``TypeError: load() got an unexpected keyword argument``)."""
    try:
        parameters = inspect.signature(load).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function without a signature: do not guess
        return {}
    takes_it = any(p.name == 'weights_only' or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {'weights_only': False} if takes_it else {}


def _patch_torch_load_weights_only() -> None:
    """Symptom: ``_pickle.UnpicklingError: Weights only load failed`` when loading or resuming an mmcv
    checkpoint whose ``meta`` holds non-tensor objects (e.g. a numpy ``best_score`` written by EvalHook).

    torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``. mmcv checkpoints are full pickles written by
    mmcv itself, so mmcv's local-file loader asks for the pre-2.6 behaviour explicitly. Only load checkpoints you
    trust, as with any pickle (and as with mmcv on torch < 2.6). ``weights_only=False`` is passed only to a
    ``torch.load`` that takes it (see :func:`full_pickle_kwargs`).
    """
    import os.path as osp

    import torch
    from mmcv.runner.checkpoint import CheckpointLoader

    current = CheckpointLoader._schemes.get('')
    if getattr(current, '_internimage_patched', False):
        return

    def load_from_local(filename: str, map_location=None):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        # torch.load is looked up at call time: code that replaces it (mmcv's own tests do) keeps working.
        return torch.load(filename, map_location=map_location, **full_pickle_kwargs(torch.load))

    load_from_local._internimage_patched = True
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)


def _patch_iter_runner_resume_without_cuda() -> None:
    """Symptom: ``RuntimeError: Found no NVIDIA driver`` when ``--resume-from`` / ``--auto-resume`` resumes an
    iteration-based run (``IterBasedRunner``) on a machine without CUDA.

    mmcv 1.7's ``IterBasedRunner.resume`` calls ``torch.cuda.current_device()`` for ``map_location='default'``
    without checking that CUDA exists (``BaseRunner.resume``, used by epoch-based runs, does check). Without CUDA the
    default becomes ``'cpu'``, which is what ``BaseRunner.resume`` does.
    """
    import torch
    from mmcv.runner import IterBasedRunner

    original = IterBasedRunner.resume
    if getattr(original, '_internimage_patched', False):
        return

    def resume(self, checkpoint, resume_optimizer=True, map_location='default'):
        if map_location == 'default' and not torch.cuda.is_available():
            map_location = 'cpu'
        return original(self, checkpoint, resume_optimizer=resume_optimizer, map_location=map_location)

    resume._internimage_patched = True
    IterBasedRunner.resume = resume


PATCHES = (
    _patch_get_stream_int_device,
    _patch_ddp_replicated_tensor_module,
    _patch_torch_load_weights_only,
    _patch_iter_runner_resume_without_cuda,
)


def apply_patches() -> None:
    """Apply every compatibility patch (idempotent)."""
    for patch in PATCHES:
        patch()
