"""Multi-threaded CPU RoIAlign (``ops_roialign._C``) with mmcv's arguments and semantics.

mmcv's CPU RoIAlign runs on one thread; :func:`mmcv_custom.roi_align_cpu.patch_mmcv_roi_align_cpu` routes mmcv's
``RoIAlignFunction`` here for CPU tensors. Importing this package never requires the compiled extension.
"""
from __future__ import annotations

import torch  # noqa: F401  (loads libtorch, which _C links against, before _C is imported)

_extension = None
_extension_error: Exception | None = None


def load_extension():
    """The compiled ``ops_roialign._C`` module, or None where it is not built (imported once, lazily)."""
    global _extension, _extension_error
    if _extension is None and _extension_error is None:
        try:
            from . import _C
            _extension = _C
        except ImportError as error:  # not built, or built against another torch
            _extension_error = error
    return _extension


def extension_available() -> bool:
    return load_extension() is not None


__all__ = ['extension_available', 'load_extension']
