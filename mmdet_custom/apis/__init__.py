from mmcv.cnn.utils import revert_sync_batchnorm

from .distributed import init_distributed
from .sync_bn import count_sync_batchnorm, revert_sync_bn_if_single_process

__all__ = ['count_sync_batchnorm', 'init_distributed', 'revert_sync_batchnorm', 'revert_sync_bn_if_single_process']
