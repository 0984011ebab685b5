"""mmdet_custom/apis/distributed.py: mmdet's distributed code paths on a gloo group without CUDA."""
import pytest
import torch
from mmcv.parallel import DataContainer
from torch import nn

import mmcv_custom  # noqa: F401
from mmdet_custom.apis.distributed import build_ddp_any_device, enable_cpu_distributed


class _Detector(nn.Module):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, img):
        return self.linear(img)

    def train_step(self, data, optimizer=None):
        assert isinstance(data['img'], torch.Tensor), type(data['img'])  # opened, not a DataContainer
        loss = self(data['img']).pow(2).mean()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data['img']))


def test_mmdet_build_ddp_refuses_the_cpu():
    """The symptom: mmdet 2.28's build_ddp only knows cuda, mlu and npu."""
    from mmdet.utils import build_ddp
    with pytest.raises(AssertionError, match='Only available for cuda'):
        build_ddp(_Detector(), 'cpu')


def test_cpu_ddp_opens_data_containers(gloo_world_of_one):
    model = build_ddp_any_device(_Detector(), 'cpu', device_ids=[0], broadcast_buffers=False)
    batch = dict(img=DataContainer([torch.ones(2, 4)], stack=True))
    outputs = model.train_step(batch)
    outputs['loss'].backward()
    assert model.module.linear.weight.grad is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason='the patch is a no-op with CUDA')
def test_enable_cpu_distributed_replaces_mmdets_cuda_only_names(monkeypatch):
    import mmdet.apis.train as mmdet_train
    from mmdet.datasets.samplers import distributed_sampler

    cuda_seed = distributed_sampler.sync_random_seed
    monkeypatch.setattr(mmdet_train, 'build_ddp', mmdet_train.build_ddp)  # restored after the test
    monkeypatch.setattr(distributed_sampler, 'sync_random_seed', cuda_seed)
    enable_cpu_distributed()
    assert mmdet_train.build_ddp is build_ddp_any_device
    assert distributed_sampler.sync_random_seed is not cuda_seed
