"""InternImage detection plugin for MMDetection 2.x.

Importing it checks the installed stack, applies the old-stack compatibility patches, and registers
the backbones, heads, detectors, necks and datasets into mmdet's registries. Where neither mmcv nor mmdet is
installed it does none of that, so the plain-PyTorch backbones (models/backbones) still import with torch alone.
"""
from ._stack import MMDET_STACK_INSTALLED

if MMDET_STACK_INSTALLED:
    import mmcv_custom  # noqa: F401  (stack check and compatibility patches come first)
    from mmcv_custom.ema_resume import patch_ema_resume

    patch_ema_resume()  # needs mmdet's EMA hooks, hence here and not in mmcv_custom

    from . import datasets, models  # noqa: F401

__version__ = '0.1.0'
