from .cbnet_dino import CBDINO
from .dino import DINO

__all__ = ['CBDINO', 'DINO']
