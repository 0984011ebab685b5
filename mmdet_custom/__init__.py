"""InternImage detection plugin for MMDetection 2.x.

Importing it checks the installed stack, applies the old-stack compatibility patches, and registers
the backbones, heads, detectors, necks and datasets into mmdet's registries.
"""
import mmcv_custom  # noqa: F401  (stack check and compatibility patches come first)

from . import datasets, models  # noqa: F401,E402

__version__ = '0.1.0'
