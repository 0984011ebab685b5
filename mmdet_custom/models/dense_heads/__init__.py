from .cbdino_head import CBDINOHead
from .dino_head import DINOHead

__all__ = ['CBDINOHead', 'DINOHead']
