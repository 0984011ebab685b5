"""Distributed runs, also without CUDA: the process group for ``--launcher pytorch|slurm|mpi``.

With CUDA this is mmcv's ``init_dist``. Without CUDA the group uses gloo on the CPU (mmcv's ``init_dist`` needs a GPU
per process); the CPU DDP wrapper and mmdet's CUDA-only assumptions are patched by
``mmcv_custom.cpu_distributed.enable_cpu_distributed``.
"""
from __future__ import annotations

import logging
import os
import subprocess

import torch
import torch.distributed as dist

from mmcv_custom.cli import UserError


def _slurm_master_addr() -> str:
    node_list = os.environ['SLURM_NODELIST']
    try:
        return subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1').strip() or '127.0.0.1'
    except OSError:
        return '127.0.0.1'


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
