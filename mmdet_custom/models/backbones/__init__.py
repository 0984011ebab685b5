"""Backbones: plain PyTorch modules (importable with torch and timm alone), registered into mmdet when present.

Registration is this thin layer, not a decorator in the model files, so ``intern_image.py``, ``cbnet.py`` and
``flash_intern_image.py`` serve non-mmdet code unchanged. ``MMDET_STACK_INSTALLED`` is False only where neither mmcv
nor mmdet is installed.
"""
from ..._stack import MMDET_STACK_INSTALLED
from .cbnet import CBInternImage
from .flash_intern_image import FLASH_INTERN_IMAGE_VARIANTS, FlashInternImage
from .intern_image import INTERN_IMAGE_VARIANTS, InternImage

if MMDET_STACK_INSTALLED:
    from mmdet.models.builder import BACKBONES

    for _backbone in (InternImage, CBInternImage, FlashInternImage):
        BACKBONES.register_module(module=_backbone)

__all__ = ['CBInternImage', 'FLASH_INTERN_IMAGE_VARIANTS', 'FlashInternImage', 'INTERN_IMAGE_VARIANTS', 'InternImage']
