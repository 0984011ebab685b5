"""Options that used to be accepted and ignored: ``train.py --auto-scale-lr`` now scales the lr by the global batch
(gradient accumulation included) and ``image_demo.py --async-test`` is refused in one line."""
from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_auto_scale_lr_with_accumulation_in_a_training_run(helpers, shapes_data, tmp_path):
    # 1 process x 2 images x 2 accumulated = 4 images per step, the config's lr (1e-3) set for 8: halved
    result = helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(tmp_path), '--auto-scale-lr',
                                 '--no-validate', '--cfg-options',
                                 *helpers.tiny_cfg_options(shapes_data, max_iters=2, checkpoint_interval=2),
                                 'optimizer_config.type=GradientCumulativeOptimizerHook',
                                 'optimizer_config.cumulative_iters=2', 'auto_scale_lr.base_batch_size=8'])
    log = next(tmp_path.glob('*.log')).read_text()
    assert 'gradient accumulation: GradientCumulativeOptimizerHook adds up the gradients of 2 iterations' in log
    assert re.search(r'--auto-scale-lr: global batch 4 \(1 process\(es\) x 2 images x 2 accumulated\), base batch 8: '
                     r'lr 0\.001 -> 0\.0005', log)
    assert "lr=0.0005" in log.split('--auto-scale-lr:')[1]   # the config the run logs (and trains with)
    assert result.returncode == 0


def test_auto_scale_lr_without_a_base_batch_is_refused(helpers, shapes_data, tmp_path, capsys):
    code = helpers.run_in_process('train', [helpers.demo_config, '--work-dir', str(tmp_path), '--auto-scale-lr',
                                            '--no-validate', '--cfg-options', *helpers.tiny_cfg_options(shapes_data),
                                            'auto_scale_lr.base_batch_size=None'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith('train.py: error: --auto-scale-lr: auto_scale_lr.base_batch_size of '
                              f'{helpers.demo_config} states none')


def test_async_test_is_refused_in_one_line(helpers, capsys):
    code = helpers.run_in_process('image_demo', ['demo.jpg', helpers.demo_config, 'model.pth', '--async-test'])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith('image_demo.py: error: --async-test: not '
                                                                       'supported')
