"""AtomicCheckpointHook: a crash while saving leaves the previous checkpoint and latest.pth intact."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mmcv.runner import HOOKS
from mmdet.utils import find_latest_checkpoint
from torch import nn

import mmcv_custom.checkpoint_hook as checkpoint_hook
from mmcv_custom.checkpoint_hook import AtomicCheckpointHook


def fake_runner(work_dir, iteration: int, epoch: int = 0):
    model = nn.Linear(3, 2)
    return SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), meta={'seed': 0},
                           epoch=epoch, iter=iteration, work_dir=str(work_dir), logger=logging.getLogger('test'))


def saved_hook(work_dir, **kwargs) -> AtomicCheckpointHook:
    hook = AtomicCheckpointHook(interval=2, by_epoch=False, **kwargs)
    hook.before_run(fake_runner(work_dir, 0))
    return hook


def test_registered_under_its_name():
    assert HOOKS.get('AtomicCheckpointHook') is AtomicCheckpointHook


def test_saves_checkpoint_latest_link_and_completed_iterations(tmp_path):
    hook = saved_hook(tmp_path)
    runner = fake_runner(tmp_path, iteration=3)  # inside after_train_iter of the 4th iteration
    hook._save_checkpoint(runner)
    assert os.readlink(tmp_path / 'latest.pth') == 'iter_4.pth'
    checkpoint = torch.load(tmp_path / 'iter_4.pth', weights_only=False)
    assert checkpoint['meta']['iter'] == 4  # completed iterations (mmcv would record 3)
    assert checkpoint['meta']['seed'] == 0
    assert torch.equal(checkpoint['state_dict']['weight'], runner.model.weight.detach())
    assert 'optimizer' in checkpoint
    assert runner.meta['hook_msgs']['last_ckpt'] == str(tmp_path / 'iter_4.pth')


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    hook = saved_hook(tmp_path)
    hook._save_checkpoint(fake_runner(tmp_path, iteration=1))

    def dying_save(obj, f):  # writes half a file, then the process "dies"
        f.write(b'PK\x03\x04 truncated')
        raise KeyboardInterrupt('killed while saving')

    monkeypatch.setattr(checkpoint_hook.torch, 'save', dying_save)
    with pytest.raises(KeyboardInterrupt):
        hook._save_checkpoint(fake_runner(tmp_path, iteration=3))
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_2.pth', 'latest.pth']  # no partial file left
    latest = find_latest_checkpoint(str(tmp_path))
    assert torch.load(latest, weights_only=False)['meta']['iter'] == 2


def test_keeps_only_max_keep_ckpts(tmp_path):
    hook = saved_hook(tmp_path, max_keep_ckpts=2)
    for iteration in (1, 3, 5):
        hook._save_checkpoint(fake_runner(tmp_path, iteration=iteration))
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_4.pth', 'iter_6.pth']
    assert os.readlink(tmp_path / 'latest.pth') == 'iter_6.pth'


def test_epoch_based_names_and_counters(tmp_path):
    hook = AtomicCheckpointHook(interval=1)
    hook.before_run(fake_runner(tmp_path, 0))
    hook._save_checkpoint(fake_runner(tmp_path, iteration=10, epoch=1))
    checkpoint = torch.load(tmp_path / 'epoch_2.pth', weights_only=False)
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (2, 10)


def test_rotation_never_deletes_the_last_finite_checkpoint(tmp_path):
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    runner = fake_runner(tmp_path, 0)
    hook.before_run(runner)
    hook._save_checkpoint(runner)                      # iter_1.pth: finite
    runner.iter = 1
    with torch.no_grad():
        runner.model.weight.fill_(float('nan'))        # the run diverged
    hook._save_checkpoint(runner)                      # iter_2.pth: NaN; iter_1.pth must stay
    runner.iter = 2
    hook._save_checkpoint(runner)                      # iter_3.pth: NaN; iter_2.pth goes, iter_1.pth stays
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1.pth', 'iter_3.pth']
    assert runner.meta['hook_msgs']['last_finite_ckpt'] == str(tmp_path / 'iter_1.pth')
    assert torch.isfinite(torch.load(tmp_path / 'iter_1.pth', weights_only=False)['state_dict']['weight']).all()


def test_stale_temporary_files_of_a_killed_save_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()   # a pid no process has any more
    stale = tmp_path / f'iter_4.pth.{dead.pid}{checkpoint_hook.TMP_SUFFIX}'
    stale.write_bytes(b'PK\x03\x04 half a checkpoint')
    live = tmp_path / f'iter_6.pth.{os.getppid()}{checkpoint_hook.TMP_SUFFIX}'   # a running process's save
    live.write_bytes(b'in progress')
    other = tmp_path / 'notes.tmp'
    other.write_text('not ours')
    AtomicCheckpointHook(interval=2, by_epoch=False).before_run(fake_runner(tmp_path, 0))
    assert not stale.exists()
    assert live.exists() and other.exists()
