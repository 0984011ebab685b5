from .cbnet_channel_mapper import CBChannelMapper

__all__ = ['CBChannelMapper']
