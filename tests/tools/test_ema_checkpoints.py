"""A real EMA training run (the tiny demo config with the Cascade 3x configs' ``ExpMomentumEMAHook``): its checkpoint
holds ``ema_*`` buffers; test.py loads it with the same config (dropping them, one log line), and ``--resume-from``
keeps them (the hook gets the checkpoint's averages back)."""
from __future__ import annotations

import re

import pytest
import torch

# The Cascade 3x configs' hook; total_iter tiny so its momentum is 1e-4 from the first iteration (by default it starts
# near 1, and the averages would equal the weights during a short run, hiding whether a resume kept them).
EMA_HOOK = "dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0001, total_iter=1e-6, priority=49)"


@pytest.fixture(scope='module')
def ema_config(tmp_path_factory, helpers) -> str:
    path = tmp_path_factory.mktemp('ema_config') / 'ema_demo.py'
    path.write_text(f"_base_ = ['{helpers.repo / helpers.demo_config}']\n"
                    f"custom_hooks = [dict(type='NumClassCheckHook'), {EMA_HOOK}]\n")
    return str(path)


@pytest.fixture(scope='module')
def ema_run(ema_config, shapes_data, helpers, tmp_path_factory):
    """2 iterations with the EMA hook."""
    work_dir = tmp_path_factory.mktemp('ema_run')
    helpers.run_script(['train.py', ema_config, '--work-dir', str(work_dir), '--seed', '0', '--no-validate',
                        '--cfg-options', *helpers.tiny_cfg_options(shapes_data, max_iters=2, checkpoint_interval=2)])
    return work_dir


def ema_keys(state_dict: dict) -> list[str]:
    return [key for key in state_dict if key.startswith('ema_')]


@pytest.mark.slow
def test_an_ema_runs_checkpoint_tests_with_the_same_config(ema_run, ema_config, shapes_data, helpers):
    state_dict = torch.load(ema_run / 'iter_2.pth', weights_only=False)['state_dict']
    n_ema = len(ema_keys(state_dict))
    assert n_ema == len(state_dict) - n_ema > 100   # one ema_* buffer per model tensor
    result = helpers.run_script(['test.py', ema_config, str(ema_run / 'latest.pth'), '--eval', 'bbox',
                                 '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    output = result.stdout + result.stderr
    assert f'dropped its {n_ema} ema_* buffers' in output
    assert 'bbox_mAP' in output


@pytest.mark.slow
def test_resuming_an_ema_run_keeps_its_averages(ema_run, ema_config, shapes_data, helpers, tmp_path):
    saved = torch.load(ema_run / 'iter_2.pth', weights_only=False)['state_dict']
    work_dir = tmp_path / 'resumed'
    result = helpers.run_script(['train.py', ema_config, '--work-dir', str(work_dir), '--seed', '0', '--no-validate',
                                 '--resume-from', str(ema_run / 'iter_2.pth'), '--cfg-options',
                                 *helpers.tiny_cfg_options(shapes_data, max_iters=3, checkpoint_interval=1)])
    n_ema = len(ema_keys(saved))
    assert re.search(rf'ExpMomentumEMAHook: \S+iter_2\.pth restored {n_ema} of {n_ema} ema_\* buffers',
                     result.stdout + result.stderr)
    resumed = torch.load(work_dir / 'iter_3.pth', weights_only=False)['state_dict']
    # ema' = (1 - 1e-4) ema + 1e-4 w: the averages barely move from the saved ones; restarted from the loaded weights
    # they would sit where the weights are
    key = next(k for k in saved if k.startswith('backbone.') and k.endswith('.weight') and
               not torch.equal(saved[k], saved[f"ema_{k.replace('.', '_')}"]))
    ema_key = f"ema_{key.replace('.', '_')}"
    apart = (saved[key] - saved[ema_key]).abs().max().item()
    assert (resumed[ema_key] - saved[ema_key]).abs().max().item() < 0.01 * apart
