"""SlurmRequeueHook on mmcv's runners without Slurm: SIGUSR1 mid-run saves the state after the current iteration,
points latest.pth at it, calls ``scontrol requeue $SLURM_JOB_ID`` and stops; a resumed run continues from it.
(The real Slurm round trip, sbatch -> signal -> requeue -> resume: tests/tools/test_slurm.py.)"""
from __future__ import annotations

import logging
import os
import signal
import stat

import pytest
import torch
from mmcv.runner import EpochBasedRunner, Hook, IterBasedRunner
from torch import nn

from mmcv_custom.slurm_requeue import SlurmRequeueHook

LOGGER = logging.getLogger('test_slurm_requeue')


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(2, 1)

    def train_step(self, data, optimizer):
        loss = self.linear(data).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data))


class SignalAt(Hook):
    """Sends this process SIGUSR1 during iteration ``at`` (1-based), as Slurm would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)


DATA = [torch.full((2,), float(i)) for i in range(4)]   # 4 iterations per epoch at batch 1


def make_runner(cls, work_dir, signal_at=None, **kwargs):
    model = Toy()
    runner = cls(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), work_dir=str(work_dir),
                 logger=LOGGER, meta={}, **kwargs)
    runner.register_hook(SlurmRequeueHook(), priority='LOWEST')
    if signal_at is not None:
        runner.register_hook(SignalAt(signal_at))
    return runner


def loader():
    return torch.utils.data.DataLoader(DATA, batch_size=1, shuffle=False)


@pytest.fixture(autouse=True)
def default_handlers(monkeypatch):
    """The hook installs a SIGUSR1 handler; give the default back after each test. No Slurm job unless asked."""
    previous = signal.getsignal(signal.SIGUSR1)
    monkeypatch.delenv('SLURM_JOB_ID', raising=False)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_iteration_runner_saves_after_the_signalled_iteration_and_stops(tmp_path):
    runner = make_runner(IterBasedRunner, tmp_path, signal_at=3, max_iters=8)
    with pytest.raises(SystemExit) as stop:
        runner.run([loader()], [('train', 8)])
    assert stop.value.code == 0
    assert os.readlink(tmp_path / 'latest.pth') == 'iter_3.pth'
    checkpoint = torch.load(tmp_path / 'iter_3.pth', weights_only=False)
    assert checkpoint['meta']['iter'] == 3 and 'optimizer' in checkpoint
    torch.testing.assert_close(checkpoint['state_dict']['linear.weight'], runner.model.linear.weight.detach())

    resumed = make_runner(IterBasedRunner, tmp_path, max_iters=8)
    resumed.resume(str(tmp_path / 'latest.pth'))
    assert resumed.iter == 3
    resumed.run([loader()], [('train', 8)])
    assert resumed.iter == 8


def test_epoch_runner_repeats_the_interrupted_epoch_and_drops_the_file_after_it(tmp_path):
    # signal in iteration 6 = epoch 2's second batch: the file says "1 epoch done, 4 iterations", the weights are
    # those after 6 iterations
    runner = make_runner(EpochBasedRunner, tmp_path, signal_at=6, max_epochs=3)
    with pytest.raises(SystemExit):
        runner.run([loader()], [('train', 1)])
    checkpoint = torch.load(tmp_path / 'iter_6.pth', weights_only=False)
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (1, 4)
    assert checkpoint['meta']['hook_msgs']['preempted'] == str(tmp_path / 'iter_6.pth')

    resumed = make_runner(EpochBasedRunner, tmp_path, max_epochs=3)
    resumed.resume(str(tmp_path / 'latest.pth'))
    assert (resumed.epoch, resumed.iter) == (1, 4)
    resumed.run([loader()], [('train', 1)])
    assert (resumed.epoch, resumed.iter) == (3, 12)
    assert not (tmp_path / 'iter_6.pth').exists()   # superseded once the repeated epoch ended
    assert 'preempted' not in resumed.meta['hook_msgs']


def test_under_slurm_the_job_is_requeued(tmp_path, monkeypatch):
    calls = tmp_path / 'scontrol_calls'
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
    monkeypatch.setenv('SLURM_JOB_ID', '4242')
    runner = make_runner(IterBasedRunner, tmp_path / 'work', signal_at=2, max_iters=8)
    with pytest.raises(SystemExit):
        runner.run([loader()], [('train', 8)])
    assert calls.read_text() == 'requeue 4242\n'
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()


def test_without_a_signal_nothing_happens(tmp_path):
    runner = make_runner(IterBasedRunner, tmp_path, max_iters=4)
    runner.run([loader()], [('train', 4)])
    assert runner.iter == 4 and not list(tmp_path.glob('*.pth'))
