"""Preempted Slurm jobs continue by themselves: ``SlurmRequeueHook`` (``train.py --requeue-on-signal``, which
``REQUEUE=1 sh slurm_train.sh ...`` passes).

Slurm sends a job's tasks a signal before its time limit (``sbatch --signal=USR1@90``) and on ``scancel --signal=USR1``;
preemption with a grace time sends SIGTERM. On that signal every rank finishes its current iteration, the ranks agree
(one all-reduce per iteration, so they stop at the same one), rank 0 writes a checkpoint atomically and points
``latest.pth`` at it, runs ``scontrol requeue $SLURM_JOB_ID`` and all ranks stop. Slurm puts the job back in the queue;
when it starts again, ``--auto-resume`` continues from that checkpoint.

The checkpoint holds the weights and optimizer state after the last completed iteration:

* iteration-based runners: ``iter_N.pth`` with N completed iterations, resumed exactly there;
* epoch-based runners: ``iter_N.pth`` too (N completed iterations; an auto-resume picks it over the older
  ``epoch_M.pth``) whose meta says the epoch is not complete: the resumed run repeats that epoch from its first batch
  with the weights trained so far (mmcv cannot start a data loader mid-epoch), and the iteration counter restarts at
  the epoch's first iteration so the learning-rate schedule stays in step. Once the resumed run has saved its next
  regular checkpoint, that ``iter_N.pth`` is removed (it is older than the epoch checkpoints that follow it).
  EMA hooks' averages are swapped as at an epoch end, so the file has the layout of an epoch checkpoint.
"""
from __future__ import annotations

import os
import os.path as osp
import signal
import subprocess

import torch
import torch.distributed as dist
from mmcv.runner import HOOKS, EpochBasedRunner, Hook, get_dist_info

from .checkpoint_hook import atomic_symlink, atomic_torch_save, build_checkpoint

PREEMPTED_KEY = 'preempted'


def _all_ranks_agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any (a signal reaches the ranks at slightly different times)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' else torch.device('cpu')
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


@HOOKS.register_module()
class SlurmRequeueHook(Hook):
    """Save, requeue and stop on ``signals`` (names, default SIGUSR1 and SIGTERM): see the module docstring.

    ``requeue=False`` only saves and stops (outside Slurm, or to requeue by other means)."""

    def __init__(self, signals: tuple[str, ...] = ('SIGUSR1', 'SIGTERM'), requeue: bool = True) -> None:
        self.signums = [getattr(signal, name) for name in signals]
        self.requeue = requeue
        self.received: int | None = None
        self.stale_checkpoint: str | None = None

    def _on_signal(self, signum, frame) -> None:  # only a flag: acting inside a handler, mid-step, is unsafe
        self.received = signum

    def before_run(self, runner) -> None:
        for signum in self.signums:
            signal.signal(signum, self._on_signal)
        # resumed from a mid-epoch checkpoint of an epoch-based run (see above)? mmcv's resume keeps the
        # checkpoint's meta['hook_msgs'] only, hence the note there; taken out so later checkpoints do not repeat it
        self.stale_checkpoint = ((runner.meta or {}).get('hook_msgs') or {}).pop(PREEMPTED_KEY, None)

    def after_train_epoch(self, runner) -> None:
        # runs after the checkpoint hook (priority LOWEST): the regular checkpoint of this epoch now exists
        rank, _ = get_dist_info()
        if rank == 0 and self.stale_checkpoint and osp.isfile(self.stale_checkpoint):
            os.remove(self.stale_checkpoint)
            runner.logger.info(f'SlurmRequeueHook: removed {self.stale_checkpoint} (superseded by this epoch\'s '
                               'checkpoint)')
        self.stale_checkpoint = None

    def after_train_iter(self, runner) -> None:
        if not _all_ranks_agree(self.received is not None):
            return
        name = signal.Signals(self.received).name if self.received is not None else 'a signal (on another rank)'
        rank, _ = get_dist_info()
        if rank == 0:
            path = self._save(runner)
            runner.logger.info(f'SlurmRequeueHook: {name} received: saved {path}')
            self._requeue(runner)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        raise SystemExit(0)

    def _save(self, runner) -> str:
        by_epoch = isinstance(runner, EpochBasedRunner)
        ema_hooks = [hook for hook in runner.hooks if hasattr(hook, '_swap_ema_parameters')] if by_epoch else []
        for hook in ema_hooks:   # an epoch checkpoint's layout: EMA weights in the model, raw ones in ema_*
            hook._swap_ema_parameters()
        completed = runner.iter + 1   # after_train_iter runs before the runner counts this iteration
        path = osp.join(runner.work_dir, f'iter_{completed}.pth')
        checkpoint = build_checkpoint(runner, None, save_optimizer=True, by_epoch=False)
        if by_epoch:
            # the interrupted epoch is repeated from its start: the counters of its first iteration
            checkpoint['meta'].update(epoch=runner.epoch, iter=runner.iter - runner.inner_iter)
            checkpoint['meta']['hook_msgs'] = dict(checkpoint['meta'].get('hook_msgs') or {}, **{PREEMPTED_KEY: path})
        atomic_torch_save(checkpoint, path)
        atomic_symlink(osp.basename(path), osp.join(runner.work_dir, 'latest.pth'))
        if self.stale_checkpoint not in (None, path) and osp.isfile(self.stale_checkpoint):
            os.remove(self.stale_checkpoint)   # preempted twice in one epoch: its higher N would win an auto-resume
        return path

    def _requeue(self, runner) -> None:
        job_id = os.environ.get('SLURM_JOB_ID')
        if not self.requeue or not job_id:
            runner.logger.info('SlurmRequeueHook: not requeued (' +
                               ('requeue=False' if not self.requeue else 'no SLURM_JOB_ID: not a Slurm job') +
                               '); resume with --auto-resume')
            return
        # said before: once requeued, Slurm ends this job's processes at any moment
        runner.logger.info(f'SlurmRequeueHook: requeueing job {job_id}; it resumes from the checkpoint when it '
                           'starts again')
        result = subprocess.run(['scontrol', 'requeue', job_id], capture_output=True, text=True)
        if result.returncode != 0:   # e.g. an interactive srun job (only batch jobs can be requeued)
            runner.logger.warning(f'SlurmRequeueHook: scontrol requeue {job_id} failed ({result.stderr.strip()}); '
                                  'submit the job again with --auto-resume')
