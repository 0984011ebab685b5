from .dcnv4 import DCNv3OnDCNv4, DCNv4

__all__ = ['DCNv3OnDCNv4', 'DCNv4']
