"""Distributed runs, also without CUDA: the process group for ``--launcher pytorch|slurm|mpi``
(:func:`init_distributed`) and mmdet's distributed code paths on that group (:func:`enable_cpu_distributed`).

With CUDA the group is mmcv's ``init_dist``. Without CUDA it uses gloo on the CPU (mmcv's ``init_dist`` needs a GPU
per process), and ``train.py`` / ``test.py`` call :func:`enable_cpu_distributed` (a no-op with CUDA), which fixes:
mmdet's ``build_ddp`` refuses ``device='cpu'`` (``ValueError``), mmcv's DDP wrapper without devices hands
``DataContainer`` objects to the model unopened, and mmdet's samplers agree on a seed through a CUDA tensor
(``sync_random_seed(device='cuda')``). Tested in ``tests/apis/test_distributed.py``, ``tests/tools/test_slurm.py``
and by the two-process gloo runs in ``tests/tools/test_launchers.py``.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

import torch
import torch.distributed as dist

from mmcv_custom.cli.errors import UserError


def _slurm_master_addr() -> str:
    """The host of the job step's task 0 (the first host of its node list), for the tasks' process group.

    ``scontrol show hostnames`` expands the node list, as mmcv's slurm launcher does. Without a working
    ``scontrol`` (a container with only the job's environment) the first host is read from the list itself:
    Slurm's hostlist syntax is comma-separated names with bracketed ranges ("gpu-a[07-09,12],gpu-b3" starts with
    "gpu-a07"), so it is the first name with each bracket replaced by its first value. A MASTER_ADDR set by the user
    wins; no node list at all is a one-line error.
    """
    if os.environ.get('MASTER_ADDR'):
        return os.environ['MASTER_ADDR']
    node_list = next((os.environ[name] for name in ('SLURM_STEP_NODELIST', 'SLURM_NODELIST', 'SLURM_JOB_NODELIST')
                      if os.environ.get(name)), None)
    if node_list is None:
        raise UserError('--launcher slurm: SLURM_NODELIST is not set (start the job with srun, e.g. with '
                        'slurm_train.sh, or set MASTER_ADDR)')
    scontrol = shutil.which('scontrol')
    if scontrol is not None:
        try:
            result = subprocess.run([scontrol, 'show', 'hostnames', node_list], capture_output=True, text=True,
                                    timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            result = None
        hosts = result.stdout.split() if result is not None and result.returncode == 0 else []
        if hosts:
            return hosts[0]
    depth, first_entry = 0, node_list
    for position, char in enumerate(node_list):
        depth += {'[': 1, ']': -1}.get(char, 0)
        if char == ',' and depth == 0:
            first_entry = node_list[:position]
            break
    first_host = re.sub(r'\[([^\]]*)\]', lambda match: re.split(r'[,-]', match.group(1))[0], first_entry).strip()
    if not first_host or any(char in first_host for char in '[] '):
        raise UserError(f'--launcher slurm: cannot read the first host of the node list {node_list!r} '
                        '(scontrol not found); set MASTER_ADDR')
    return first_host


def init_distributed(launcher: str, dist_params: dict | None, logger: logging.Logger | None = None) -> str:
    """Initialise the process group for ``launcher``; returns the backend.

    With CUDA this is mmcv's ``init_dist`` (backend from ``dist_params``, usually nccl). Without CUDA the group
    uses gloo on the CPU: mmcv would call ``torch.cuda.set_device``. ``pytorch`` reads torchrun's environment;
    ``slurm`` and ``mpi`` translate their environment into it (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE).
    """
    from mmcv.runner import init_dist
    dist_params = dict(dist_params or {})
    if torch.cuda.is_available():
        init_dist(launcher, **dist_params)
        return dist_params.get('backend', 'nccl')
    if launcher == 'slurm':
        os.environ.setdefault('MASTER_PORT', str(dist_params.get('port', 29500)))
        os.environ.setdefault('MASTER_ADDR', _slurm_master_addr())
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    elif launcher == 'mpi':
        os.environ.setdefault('MASTER_PORT', str(dist_params.get('port', 29500)))
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    elif launcher != 'pytorch':
        raise UserError(f'--launcher {launcher}: unknown launcher')
    for variable in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE'):
        if variable not in os.environ:
            raise UserError(f'--launcher {launcher}: environment variable {variable} is not set (start the job '
                            'with dist_train.sh / torchrun, or with srun for slurm)')
    dist.init_process_group(backend='gloo')
    if logger is not None and dist_params.get('backend', 'gloo') != 'gloo':
        logger.info(f'no CUDA: distributed backend gloo on the CPU instead of {dist_params["backend"]}')
    return 'gloo'


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
