"""Distributed runs, also without CUDA: the process group for ``--launcher pytorch|slurm|mpi``.

With CUDA this is mmcv's ``init_dist``. Without CUDA the group uses gloo on the CPU (mmcv's ``init_dist`` needs a GPU
per process); the CPU DDP wrapper and mmdet's CUDA-only assumptions are patched by
``mmcv_custom.cpu_distributed.enable_cpu_distributed``.
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
