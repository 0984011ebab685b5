"""Checkpoints written atomically, so a crash while saving never leaves a broken latest checkpoint.

mmcv's ``CheckpointHook`` has the runner ``torch.save`` straight to ``work_dir/epoch_N.pth`` and then points
``latest.pth`` at it: a process killed mid-write leaves a truncated file that ``--auto-resume`` then picks up.
``AtomicCheckpointHook`` (same arguments, registered in mmcv's HOOKS) writes each checkpoint to a temporary file
in the same directory, flushes it to disk and renames it into place (``os.replace`` is atomic on POSIX); the
``latest.pth`` symlink is swapped the same way. When the write fails (a full disk), the temporary file is removed,
the previous checkpoint and ``latest.pth`` are untouched, and the run stops with a one-line
:class:`~mmcv_custom.cli.errors.UserError` naming both. ``train.py`` uses it for every config whose
``checkpoint_config`` names no other hook type.

One more difference: for iteration-based runners mmcv records ``meta['iter']`` one lower than the number of
iterations the checkpoint contains (it saves before the runner increments its counter), so a run resumed from
``iter_N.pth`` repeated iteration N. Here ``meta['iter']`` is the number of completed iterations.
"""
from __future__ import annotations

import os
import os.path as osp
import re

import torch
from mmcv.parallel import is_module_wrapper
from mmcv.runner import HOOKS, CheckpointHook, get_dist_info
from mmcv.runner.checkpoint import get_state_dict, weights_to_cpu

from .cli.errors import UserError

TMP_SUFFIX = '.tmp'  # not '.pth': mmdet's find_latest_checkpoint must never see a half-written file


def _fsync_directory(directory: str) -> None:
    """Make a rename durable (the directory entry itself is flushed)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same directory and an atomic rename."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f'{path}.{os.getpid()}{TMP_SUFFIX}'
    try:
        with open(tmp_path, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
    _fsync_directory(directory)


def atomic_symlink(target: str, link_path: str) -> None:
    """Point ``link_path`` at ``target`` (relative name) by creating a new link and renaming it over the old."""
    tmp_link = f'{link_path}.{os.getpid()}{TMP_SUFFIX}'
    if osp.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(target, tmp_link)
    os.replace(tmp_link, link_path)


def build_checkpoint(runner, meta: dict | None, save_optimizer: bool, by_epoch: bool) -> dict:
    """The dict mmcv's ``save_checkpoint`` would write, with the runner's meta and the epoch/iter counters."""
    meta = dict(meta or {})
    if runner.meta is not None:
        meta.update(runner.meta)
    completed_iters = runner.iter if by_epoch else runner.iter + 1  # see the module docstring
    meta.update(epoch=runner.epoch + 1, iter=completed_iters)
    import mmcv
    meta.update(mmcv_version=mmcv.__version__)
    model = runner.model.module if is_module_wrapper(runner.model) else runner.model
    if hasattr(model, 'CLASSES') and model.CLASSES is not None:
        meta.update(CLASSES=model.CLASSES)
    checkpoint = dict(meta=meta, state_dict=weights_to_cpu(get_state_dict(model)))
    optimizer = runner.optimizer if save_optimizer else None
    if isinstance(optimizer, torch.optim.Optimizer):
        checkpoint['optimizer'] = optimizer.state_dict()
    elif isinstance(optimizer, dict):
        checkpoint['optimizer'] = {name: optim.state_dict() for name, optim in optimizer.items()}
    return checkpoint


STALE_TMP = re.compile(r'\.(\d+)' + re.escape(TMP_SUFFIX) + '$')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporary_files(directory: str) -> list[str]:
    """Remove the temporary files (``<name>.<pid>.tmp``) that a save killed mid-write (SIGKILL, power loss) left
    behind, unless their process is still running; returns the removed paths."""
    removed = []
    if not osp.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = STALE_TMP.search(name)
        if match is None or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        path = osp.join(directory, name)
        try:
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def weights_finite(checkpoint: dict) -> bool:
    """Whether every floating-point tensor of the checkpoint's ``state_dict`` is finite (no NaN, no inf)."""
    return all(bool(torch.isfinite(value).all()) for value in checkpoint['state_dict'].values()
               if isinstance(value, torch.Tensor) and value.is_floating_point())


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints and ``latest.pth`` link are replaced atomically (local paths only;
    other storage backends fall back to mmcv's behaviour). Temporary files of a save that was killed are removed
    when a run starts; checkpoint rotation (``max_keep_ckpts``) never deletes the newest checkpoint whose weights
    are finite, so a diverging run keeps a usable one."""

    def before_run(self, runner) -> None:
        super().before_run(runner)
        rank, _ = get_dist_info()
        if rank == 0 and isinstance(self.out_dir, str) and '://' not in self.out_dir:
            for path in remove_stale_temporary_files(self.out_dir):
                runner.logger.info(f'removed {path}, left by an interrupted save')

    def _save_checkpoint(self, runner) -> None:
        rank, _ = get_dist_info()
        if rank != 0:
            return
        if not isinstance(self.out_dir, str) or '://' in self.out_dir:
            return super()._save_checkpoint(runner)
        by_epoch = self.by_epoch
        default_tmpl = 'epoch_{}.pth' if by_epoch else 'iter_{}.pth'
        filename_tmpl = self.args.get('filename_tmpl', default_tmpl)
        step = runner.epoch + 1 if by_epoch else runner.iter + 1
        filename = filename_tmpl.format(step)
        path = osp.join(self.out_dir, filename)

        checkpoint = build_checkpoint(runner, self.args.get('meta'), self.save_optimizer, by_epoch)
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as error:  # a full disk (ENOSPC), a quota, a read-only folder: the run cannot go on
            previous = (runner.meta or {}).get('hook_msgs', {}).get('last_ckpt')
            kept = (f'the previous checkpoint {previous} is intact' if previous and osp.isfile(previous)
                    else 'no earlier checkpoint of this run exists')
            raise UserError(f'checkpoint {path} could not be saved ({error.strerror or error}); {kept} '
                            '(resume from it with --resume-from or --auto-resume once there is space)') from None
        if self.args.get('create_symlink', True):
            atomic_symlink(filename, osp.join(self.out_dir, 'latest.pth'))

        hook_msgs = runner.meta.setdefault('hook_msgs', dict()) if runner.meta is not None else {}
        hook_msgs['last_ckpt'] = path
        if weights_finite(checkpoint):
            hook_msgs['last_finite_ckpt'] = path
        else:
            kept = hook_msgs.get('last_finite_ckpt')
            runner.logger.warning(f'checkpoint {path} holds non-finite weights; '
                                  + (f'{kept} is kept as the last finite one' if kept else 'no earlier one is finite'))
        keep = hook_msgs.get('last_finite_ckpt')
        if self.max_keep_ckpts > 0 and self.interval > 0:
            for old_step in range(step - self.max_keep_ckpts * self.interval, 0, -self.interval):
                old_path = osp.join(self.out_dir, filename_tmpl.format(old_step))
                if keep is not None and osp.abspath(old_path) == osp.abspath(keep):
                    continue  # the last finite checkpoint outlives the rotation
                if not osp.isfile(old_path):
                    break
                os.remove(old_path)
