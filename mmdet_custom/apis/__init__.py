from mmcv.cnn.utils import revert_sync_batchnorm

from .sync_bn import count_sync_batchnorm, revert_sync_bn_if_single_process

__all__ = ['count_sync_batchnorm', 'revert_sync_batchnorm', 'revert_sync_bn_if_single_process']
