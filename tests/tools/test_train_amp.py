"""``train.py --amp``: a bf16 run of the tiny demo config trains with finite losses (the log says bf16 autocast) and
writes float32 checkpoints; ``--amp fp16`` without a GPU is one line and exit status 1."""
from __future__ import annotations

import pytest
import torch


def test_train_with_amp_bf16(shapes_data, helpers, tmp_path):
    work_dir = tmp_path / 'bf16'
    # a subprocess: in-process, a logger another test set up would keep this run's log out of its work dir
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(work_dir), '--amp', 'bf16',
                        '--no-validate', '--cfg-options', *helpers.tiny_cfg_options(shapes_data, max_iters=2)])
    entries = helpers.read_train_log(work_dir)
    assert [e['iter'] for e in entries] == [1, 2]
    assert all(torch.isfinite(torch.tensor(e['loss'])) for e in entries)
    assert 'mixed precision: bf16 autocast on cpu' in next(work_dir.glob('*.log')).read_text()
    state = torch.load(work_dir / 'iter_2.pth', weights_only=False)['state_dict']
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_amp_fp16_needs_a_gpu(shapes_data, helpers, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: fp16 is allowed')
    status = helpers.run_in_process('train', [helpers.demo_config, '--work-dir', str(tmp_path), '--amp', 'fp16',
                                              '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ('train.py: error: --amp fp16 (amp.dtype=fp16) needs a CUDA device: mmdet scales fp16 losses '
                       'with torch.cuda.amp; on the CPU use --amp bf16')
