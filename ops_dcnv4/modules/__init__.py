from .dcnv4 import DCNv4

__all__ = ['DCNv4']
