"""mmcv_custom/torch_compat.py: each patch's symptom on the unpatched stack, and the fix once patched."""
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import mmcv_custom  # noqa: F401  (applies the patches)
from mmcv_custom import torch_compat


def test_patches_are_idempotent():
    from mmcv.parallel import _functions
    from mmcv.runner.checkpoint import CheckpointLoader

    stream_fn, loader = _functions._get_stream, CheckpointLoader._schemes['']
    torch_compat.apply_patches()
    assert _functions._get_stream is stream_fn
    assert CheckpointLoader._schemes[''] is loader


# --- _get_stream given an int ----------------------------------------------------------------------------

def test_torch_get_stream_rejects_int_device():
    """The symptom: torch >= 2.1's _get_stream wants a torch.device, and mmcv passes an int GPU index."""
    from torch.nn.parallel._functions import _get_stream
    with pytest.raises(AttributeError):
        _get_stream(0)


def test_mmcv_get_stream_accepts_int_device():
    from mmcv.parallel import _functions
    # No accelerator on this machine: torch returns no background stream, instead of crashing on the int.
    expected = None if not torch.cuda.is_available() else torch.cuda.Stream
    stream = _functions._get_stream(0)
    assert stream is None if expected is None else isinstance(stream, torch.Stream)


# --- MMDistributedDataParallel._use_replicated_tensor_module ---------------------------------------------

class _TinyDetector(nn.Module):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x):
        return self.linear(x)

    def train_step(self, data, optimizer=None):
        loss = self(data).pow(2).mean()
        return dict(loss=loss, log_vars=dict(loss=loss.item()), num_samples=len(data))


def test_mmddp_train_and_forward_on_cpu(gloo_world_of_one):
    from mmcv.parallel import MMDistributedDataParallel
    model = MMDistributedDataParallel(_TinyDetector())
    outputs = model.train_step(torch.ones(2, 4))
    outputs['loss'].backward()
    assert model.module.linear.weight.grad is not None
    assert model(torch.ones(2, 4)).shape == (2, 1)  # DDP.forward -> mmcv's _run_ddp_forward


def test_ddp_no_longer_defines_replicated_tensor_module():
    """The symptom: torch 2.x DDP dropped the attribute mmcv's _run_ddp_forward reads."""
    from torch.nn.parallel import DistributedDataParallel
    assert not hasattr(DistributedDataParallel, '_use_replicated_tensor_module')


# --- torch.load(weights_only=True) by default ------------------------------------------------------------

@pytest.fixture
def checkpoint_with_numpy_meta(tmp_path):
    from mmcv.runner import save_checkpoint
    model = nn.Linear(3, 2)
    path = str(tmp_path / 'epoch_1.pth')
    # EvalHook stores its best score as a numpy scalar in meta['hook_msgs'].
    save_checkpoint(model, path, meta=dict(epoch=1, hook_msgs=dict(best_score=np.float64(0.5))))
    return model, path


def test_plain_torch_load_refuses_mmcv_checkpoint(checkpoint_with_numpy_meta):
    """The symptom: torch >= 2.6 loads weights only by default and refuses mmcv's metadata."""
    _, path = checkpoint_with_numpy_meta
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_mmcv_load_checkpoint_reads_numpy_meta(checkpoint_with_numpy_meta):
    from mmcv.runner import load_checkpoint
    model, path = checkpoint_with_numpy_meta
    fresh = nn.Linear(3, 2)
    checkpoint = load_checkpoint(fresh, path, map_location='cpu')
    assert checkpoint['meta']['hook_msgs']['best_score'] == 0.5
    assert torch.equal(fresh.weight, model.weight)


def test_torch_load_replaced_with_the_old_signature_still_works(tmp_path, monkeypatch):
    """mmcv's own tests/test_load_model_zoo.py::test_load_external_url replaces torch.load by a function without
    ``weights_only``; the patched local loader must call it without that keyword (it used to raise TypeError)."""
    from mmcv.runner.checkpoint import _load_checkpoint

    def load(filepath, map_location=None):
        return 'local:' + filepath

    monkeypatch.setattr(torch, 'load', load)
    path = tmp_path / 'test.pth'
    path.touch()
    assert _load_checkpoint(str(path)) == f'local:{path}'


def test_full_pickle_kwargs_only_for_loaders_that_take_the_argument():
    def old_load(f, map_location=None):
        return None

    def wrapper(*args, **kwargs):  # passes keywords on to torch.load
        return None

    assert torch_compat.full_pickle_kwargs(old_load) == {}
    assert torch_compat.full_pickle_kwargs(wrapper) == {'weights_only': False}
    assert torch_compat.full_pickle_kwargs(torch.load) == {'weights_only': False}


def test_local_loader_still_reports_missing_file(tmp_path):
    from mmcv.runner import load_checkpoint
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_checkpoint(nn.Linear(3, 2), os.fspath(tmp_path / 'nothing.pth'))


# --- IterBasedRunner.resume without CUDA -------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason='the symptom needs a machine without CUDA')
def test_iter_runner_resumes_on_cpu(tmp_path):
    """Unpatched, mmcv's IterBasedRunner.resume calls torch.cuda.current_device() and fails without CUDA."""
    import logging

    from mmcv.runner import IterBasedRunner, save_checkpoint

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def train_step(self, data, optimizer):  # required by mmcv's runners
            return dict(loss=self.linear(data).sum())

    saved, resumed = Model(), Model()
    path = os.fspath(tmp_path / 'iter_5.pth')
    save_checkpoint(saved, path, meta=dict(epoch=1, iter=5))
    runner = IterBasedRunner(resumed, work_dir=os.fspath(tmp_path), logger=logging.getLogger('resume-test'),
                             max_iters=10)
    runner.resume(path, resume_optimizer=False)
    assert runner.iter == 5
    assert torch.equal(resumed.linear.weight, saved.linear.weight)
