"""Multi-threaded CPU RoIAlign (``ops_roialign._C``) with mmcv's arguments and semantics.

mmcv's CPU RoIAlign runs on one thread; :func:`ops_roialign.mmcv_route.patch_mmcv_roi_align_cpu` routes mmcv's
``RoIAlignFunction`` here for CPU tensors. Importing this package never requires the compiled extension.
"""
from __future__ import annotations

from ops_common.extension import ExtensionLoader

EXTENSION = ExtensionLoader('ops_roialign', 'RoIAlign')


load_extension = EXTENSION.load  # the compiled module, or None where it is not built (imported once, lazily)
extension_available = EXTENSION.available


__all__ = ['EXTENSION', 'extension_available', 'load_extension']
