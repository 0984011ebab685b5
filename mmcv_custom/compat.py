"""The one place for the old stack (mmcv-full 1.7, mmdet 2.28) running on today's torch.

Two things live here and nowhere else:

* :func:`check_stack` turns the common broken installs (wrong mmcv/mmdet, mmcv 2.x / mmdet 3.x, mmcv-full
  without its compiled ops) into one clear error that names the fix, instead of a traceback from deep inside
  mmcv.
* :func:`apply_patches` applies small, named patches for the incompatibilities a pin cannot fix. Each patch
  says which symptom it fixes; each is covered by a test in ``tests/mmcv_custom/test_compat.py`` that fails
  without it. Patches are idempotent.

Pins that make patches unnecessary live in ``requirements/``: numpy 1.26 (mmcv 1.x predates numpy 2),
opencv-python < 4.12 (4.12 wants numpy 2), yapf 0.40.1 (0.40.2 dropped ``FormatCode(verify=...)`` used by
``mmcv.Config``), setuptools < 82 (mmcv's setup.py needs ``pkg_resources``).
"""
from __future__ import annotations

import importlib
import importlib.util

MMCV_REQUIRED = '1.7'      # mmcv-full 1.7.x: the last 1.x line, accepted by mmdet 2.28 (>=1.3.17,<1.8)
MMDET_REQUIRED = '2.28'    # mmdet 2.28.x: the last 2.x line (upstream pins 2.28.1)
FIX = 'run `make setup` in the repository root (it builds mmcv-full 1.7.2 with ops against the installed torch)'


class StackError(ImportError):
    """The installed mmcv/mmdet stack cannot run this project; the message names the fix."""


def _version_of(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, '__version__', '0')


def check_stack() -> None:
    """Raise :class:`StackError` with one line naming the fix when the installed stack is wrong."""
    mmcv_version = _version_of('mmcv')
    if mmcv_version is None:
        raise StackError(f'mmcv-full {MMCV_REQUIRED}.x is not installed: {FIX}')
    if mmcv_version.split('.')[0] != '1':
        raise StackError(
            f'mmcv {mmcv_version} is installed, but this project needs mmcv-full {MMCV_REQUIRED}.x (mmcv 2.x is the '
            f'OpenMMLab 2.0 line, incompatible with mmdet 2.x): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    if not mmcv_version.startswith(MMCV_REQUIRED + '.'):
        raise StackError(f'mmcv-full {mmcv_version} is installed, but this project needs mmcv-full '
                         f'{MMCV_REQUIRED}.x: {FIX}')
    if importlib.util.find_spec('mmcv._ext') is None:
        raise StackError(
            f'mmcv {mmcv_version} is installed without its compiled ops (mmcv._ext is missing: this is the "lite" '
            f'`mmcv` package or a build with MMCV_WITH_OPS=0): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as error:
        raise StackError(
            f'mmcv-full {mmcv_version} has compiled ops that fail to load ({error}); they were most likely built '
            f'against another torch: {FIX}') from None

    mmdet_version = _version_of('mmdet')
    if mmdet_version is None:
        raise StackError(f'mmdet {MMDET_REQUIRED}.x is not installed: {FIX}')
    if mmdet_version.split('.')[0] != '2':
        raise StackError(
            f'mmdet {mmdet_version} is installed, but this project is an mmdet {MMDET_REQUIRED}.x plugin (mmdet 3.x '
            f'is the OpenMMLab 2.0 line): `pip uninstall -y mmdet`, then {FIX}')
    if not mmdet_version.startswith(MMDET_REQUIRED + '.'):
        raise StackError(f'mmdet {mmdet_version} is installed, but this project needs mmdet {MMDET_REQUIRED}.x: {FIX}')


# --------------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------------

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


def _patch_torch_load_weights_only() -> None:
    """Symptom: ``_pickle.UnpicklingError: Weights only load failed`` when loading or resuming an mmcv
    checkpoint whose ``meta`` holds non-tensor objects (e.g. a numpy ``best_score`` written by EvalHook).

    torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``. mmcv checkpoints are full pickles written by
    mmcv itself, so mmcv's local-file loader asks for the pre-2.6 behaviour explicitly. Only load checkpoints you
    trust, as with any pickle (and as with mmcv on torch < 2.6).
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
        return torch.load(filename, map_location=map_location, weights_only=False)

    load_from_local._internimage_patched = True
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)


PATCHES = (
    _patch_get_stream_int_device,
    _patch_ddp_replicated_tensor_module,
    _patch_torch_load_weights_only,
)


def apply_patches() -> None:
    """Apply every compatibility patch (idempotent)."""
    for patch in PATCHES:
        patch()
