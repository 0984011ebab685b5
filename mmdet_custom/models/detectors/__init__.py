from .cbnet_dino import CBDINO
from .dino import DINO
from .mask_rcnn_ import MaskRCNN_

__all__ = ['CBDINO', 'DINO', 'MaskRCNN_']
