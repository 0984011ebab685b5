"""SyncBN in single-process runs.

The Cascade COCO configs put SyncBN in their box heads, as upstream does. SyncBN needs an initialised process
group, so a run without a launcher (CPU, or one GPU) would crash in the first forward; there the layers are
converted to plain BN, which computes the same thing on a single process.
"""
from __future__ import annotations

import logging

from mmcv.cnn.utils import revert_sync_batchnorm
from mmcv.utils import print_log
from torch import nn


def count_sync_batchnorm(model: nn.Module) -> int:
    """Number of SyncBN layers (torch's ``nn.SyncBatchNorm`` or mmcv's ``SyncBatchNorm``) in ``model``."""
    return sum(1 for m in model.modules() if isinstance(m, nn.SyncBatchNorm) or type(m).__name__ == 'SyncBatchNorm')


def revert_sync_bn_if_single_process(model: nn.Module, distributed: bool,
                                     logger: logging.Logger | str | None = None) -> nn.Module:
    """Return ``model`` with every SyncBN turned into BN when ``distributed`` is False (logged), else unchanged.

    Weights, running statistics and ``requires_grad`` are kept, so checkpoints load the same either way.
    """
    if distributed:
        return model
    count = count_sync_batchnorm(model)
    if count == 0:
        return model
    model = revert_sync_batchnorm(model)
    print_log(f'Single-process run: converted {count} SyncBatchNorm layers to BatchNorm (SyncBN needs a '
              'distributed launcher)', logger=logger)
    return model
