from .._stack import MMDET_STACK_INSTALLED

if MMDET_STACK_INSTALLED:  # the heads, detectors and necks are mmdet modules; backbones import without it
    from . import backbones, dense_heads, detectors, necks, roi_heads, utils  # noqa: F401  (registers the modules)
