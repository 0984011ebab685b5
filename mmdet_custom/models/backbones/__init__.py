from .cbnet import CBInternImage
from .intern_image import INTERN_IMAGE_VARIANTS, InternImage

__all__ = ['CBInternImage', 'INTERN_IMAGE_VARIANTS', 'InternImage']
