"""Distributed runs without CUDA (a gloo process group on the CPU), applied by ``train.py`` / ``test.py`` only when
they are launched distributed on a machine without CUDA (:func:`enable_cpu_distributed`; a no-op with CUDA).

Symptoms fixed: mmdet's ``build_ddp`` refuses ``device='cpu'`` (``ValueError``), mmcv's DDP wrapper without devices
hands ``DataContainer`` objects to the model unopened, and mmdet's samplers agree on a seed through a CUDA tensor
(``sync_random_seed(device='cuda')``). Tested in ``tests/mmcv_custom/test_cpu_distributed.py`` and by the
two-process gloo runs in ``tests/tools/test_launchers.py``.
"""
from __future__ import annotations


def build_ddp_any_device(model, device: str = 'cuda', *args, **kwargs):
    """mmdet's ``build_ddp``, plus the CPU (gloo) case it refuses: ``MMDistributedDataParallel`` with no devices."""
    from mmdet.utils import build_ddp
    if device != 'cpu':
        return build_ddp(model, device, *args, **kwargs)
    kwargs.pop('device_ids', None)
    return _cpu_ddp_class()(model, *args, device_ids=None, **kwargs)


def _cpu_ddp_class():
    from mmcv.parallel import MMDistributedDataParallel
    from mmcv.parallel.scatter_gather import scatter_kwargs

    class MMDistributedDataParallelCPU(MMDistributedDataParallel):
        """mmcv's DDP wrapper without devices: it would hand DataContainers to the model unopened. Open them as
        ``MMDataParallel`` does on the CPU (scatter to device -1), then run mmcv's DDP step."""

        def _open(self, inputs, kwargs):
            inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
            return (inputs[0] if inputs else ()), (kwargs[0] if kwargs else {})

        def train_step(self, *inputs, **kwargs):
            inputs, kwargs = self._open(inputs, kwargs)
            return super().train_step(*inputs, **kwargs)

        def val_step(self, *inputs, **kwargs):
            inputs, kwargs = self._open(inputs, kwargs)
            return super().val_step(*inputs, **kwargs)

        def forward(self, *inputs, **kwargs):  # what multi_gpu_test calls
            inputs, kwargs = self._open(inputs, kwargs)
            return super().forward(*inputs, **kwargs)

    return MMDistributedDataParallelCPU


def enable_cpu_distributed() -> None:
    """Make mmdet's distributed code paths run on a gloo group without CUDA (no-op with CUDA).

    mmdet 2.28 assumes CUDA there: ``train_detector`` wraps the model with ``build_ddp`` (which refuses 'cpu'), and
    its samplers agree on a seed through ``sync_random_seed(seed, device='cuda')``. Both names are imported into
    the using modules, so they are replaced there.
    """
    import torch

    if torch.cuda.is_available():
        return
    import mmdet.apis.train as mmdet_train
    from mmdet.core.utils import sync_random_seed
    from mmdet.datasets.samplers import class_aware_sampler, distributed_sampler, infinite_sampler

    def sync_random_seed_on_cpu(seed=None, device='cpu'):
        return sync_random_seed(seed, device='cpu')

    mmdet_train.build_ddp = build_ddp_any_device
    for module in (class_aware_sampler, distributed_sampler, infinite_sampler):
        module.sync_random_seed = sync_random_seed_on_cpu
