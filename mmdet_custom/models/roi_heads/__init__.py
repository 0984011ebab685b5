from .dcnv4_fc_bbox_head import DCNv4FCBBoxHead

__all__ = ['DCNv4FCBBoxHead']
