"""revert_sync_bn_if_single_process: SyncBN -> BN (with its statistics) only for single-process runs."""
from __future__ import annotations

import logging

import torch
from mmcv.cnn import ConvModule
from torch import nn

from mmdet_custom.apis import revert_sync_bn_if_single_process
from mmdet_custom.apis.sync_bn import count_sync_batchnorm


def _model() -> nn.Module:
    model = nn.Sequential(ConvModule(3, 4, 3, padding=1, norm_cfg=dict(type='SyncBN')),
                          ConvModule(4, 4, 1, norm_cfg=dict(type='BN')))
    with torch.no_grad():
        model[0].bn.running_mean.fill_(0.5)
        model[0].bn.weight.fill_(2.0)
    return model


def test_single_process_converts_and_logs(caplog):
    model = _model()
    assert count_sync_batchnorm(model) == 1
    logger = logging.getLogger('test_sync_bn')
    with caplog.at_level(logging.INFO, logger='test_sync_bn'):
        model = revert_sync_bn_if_single_process(model, distributed=False, logger=logger)
    assert count_sync_batchnorm(model) == 0
    assert isinstance(model[0].bn, nn.modules.batchnorm._BatchNorm)
    assert torch.equal(model[0].bn.running_mean, torch.full((4,), 0.5))
    assert torch.equal(model[0].bn.weight, torch.full((4,), 2.0))
    assert 'converted 1 SyncBatchNorm' in caplog.text
    model.train()
    out = model(torch.randn(2, 3, 8, 8))  # SyncBN would need a process group here
    assert out.shape == (2, 4, 8, 8)


def test_distributed_keeps_syncbn():
    model = _model()
    assert revert_sync_bn_if_single_process(model, distributed=True, logger=None) is model
    assert count_sync_batchnorm(model) == 1
