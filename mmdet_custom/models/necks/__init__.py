from .cbnet_channel_mapper import CBChannelMapper
from .fpn_vitdet import FPN_vitdet

__all__ = ['CBChannelMapper', 'FPN_vitdet']
