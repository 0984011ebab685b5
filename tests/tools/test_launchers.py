"""dist_train.sh / dist_test.sh on the CPU (torchrun + gloo) and the srun command lines of the Slurm scripts."""
from __future__ import annotations

import json
import os
import socket
import stat

import numpy as np
import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# The same global batch in both runs: the 2 training images, no flips. Per-image RPN/RoI sampling is random, so the
# two runs agree only approximately (and the distributed run normalises each rank's losses over its own image).
def same_batch_options(helpers, data_dir, samples_per_gpu: int) -> list[str]:
    return helpers.tiny_cfg_options(data_dir, max_iters=3, checkpoint_interval=3, samples_per_gpu=samples_per_gpu) + [
        'data.train.pipeline.3.flip_ratio=0.0',
        f'data.train.ann_file={data_dir}/annotations/instances_train2.json',
    ]


@pytest.fixture(scope='module')
def two_image_data(shapes_data, tmp_path_factory):
    """The shared dataset's first 2 training images as their own annotation file."""
    content = json.loads((shapes_data / 'annotations' / 'instances_train.json').read_text())
    keep = {image['id'] for image in content['images'][:2]}
    content['images'] = [i for i in content['images'] if i['id'] in keep]
    content['annotations'] = [a for a in content['annotations'] if a['image_id'] in keep]
    (shapes_data / 'annotations' / 'instances_train2.json').write_text(json.dumps(content))
    return shapes_data


@pytest.mark.slow
def test_dist_train_two_cpu_processes_match_a_single_process_run(two_image_data, helpers, tmp_path):
    dist_dir, single_dir = tmp_path / 'dist', tmp_path / 'single'
    result = helpers.run_script(
        ['sh', 'dist_train.sh', helpers.demo_config, '2', '--work-dir', str(dist_dir), '--seed', '0',
         '--no-validate', '--cfg-options', *same_batch_options(helpers, two_image_data, samples_per_gpu=1)],
        env={'PORT': str(free_port()), 'PYTHON': os.environ.get('PYTHON', __import__('sys').executable)},
        timeout=400)
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(single_dir), '--seed', '0',
                        '--no-validate', '--cfg-options',
                        *same_batch_options(helpers, two_image_data, samples_per_gpu=2)])

    text_log = next(dist_dir.glob('*.log')).read_text()
    assert 'Distributed training: True (backend gloo)' in text_log
    assert sorted(p.name for p in dist_dir.glob('iter_*.pth')) == ['iter_3.pth']  # written once, by rank 0
    assert torch.load(dist_dir / 'iter_3.pth', weights_only=False)['meta']['iter'] == 3
    assert result.returncode == 0  # both ranks finished (torchrun fails if either does not)

    dist_log, single_log = helpers.read_train_log(dist_dir), helpers.read_train_log(single_dir)
    assert [e['iter'] for e in dist_log] == [e['iter'] for e in single_log] == [1, 2, 3]
    dist_loss = np.array([e['loss'] for e in dist_log])
    single_loss = np.array([e['loss'] for e in single_log])
    np.testing.assert_allclose(dist_loss, single_loss, rtol=0.15)


@pytest.fixture()
def fake_srun(tmp_path):
    """An `srun` on PATH that records its arguments (one per line) and environment, and runs nothing."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_record'
    script = bin_dir / 'srun'
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}.args\nenv > {record}.env\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}'}
    return env, record


def read_record(record):
    args = record.with_suffix('.args').read_text().splitlines()
    env = dict(line.split('=', 1) for line in record.with_suffix('.env').read_text().splitlines() if '=' in line)
    return args, env


def test_slurm_train_builds_the_original_srun_command(fake_srun, helpers):
    env, record = fake_srun
    helpers.run_script(['sh', 'slurm_train.sh', 'gpu_part', 'my_job', 'configs/x.py', 'work_dirs/x', '--seed', '1',
                        '--auto-resume'],
                       env={**env, 'GPUS': '16', 'SRUN_ARGS': '--quotatype=spot --time=1:00:00', 'PYTHON': 'python3'})
    args, srun_env = read_record(record)
    repo = str(helpers.repo)
    assert args == ['-p', 'gpu_part', '--job-name=my_job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                    '--cpus-per-task=10', '--kill-on-bad-exit=1', '--quotatype=spot', '--time=1:00:00',
                    'python3', '-u', f'{repo}/train.py', 'configs/x.py', '--work-dir=work_dirs/x', '--launcher=slurm',
                    '--seed', '1', '--auto-resume']
    assert srun_env['PYTHONPATH'].split(':')[0] == repo


def test_slurm_test_defaults_and_overrides(fake_srun, helpers):
    env, record = fake_srun
    helpers.run_script(['sh', 'slurm_test.sh', 'p1', 'eval', 'configs/x.py', 'ckpt.pth', '--eval', 'bbox', 'segm'],
                       env={**env, 'GPUS_PER_NODE': '4', 'GPUS': '4', 'PYTHON': 'python3'})
    args, _ = read_record(record)
    assert args == ['-p', 'p1', '--job-name=eval', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4',
                    '--cpus-per-task=5', '--kill-on-bad-exit=1', 'python3', '-u', f'{helpers.repo}/test.py',
                    'configs/x.py', 'ckpt.pth', '--launcher=slurm', '--eval', 'bbox', 'segm']


def test_launch_scripts_print_usage_without_arguments(helpers):
    for script in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh'):
        result = helpers.run_script(['sh', script], check=False)
        assert result.returncode != 0
        assert f'usage: sh {script}' in result.stderr


@pytest.mark.slow
def test_dist_test_two_cpu_processes_match_a_single_process_test(trained_run, shapes_data, helpers, tmp_path):
    options = ['--cfg-options', *helpers.tiny_cfg_options(shapes_data)]
    checkpoint = str(trained_run / 'latest.pth')
    helpers.run_script(['sh', 'dist_test.sh', helpers.demo_config, checkpoint, '2', '--eval', 'bbox', 'segm',
                        '--work-dir', str(tmp_path / 'dist'), *options],
                       env={'PORT': str(free_port()), 'PYTHON': __import__('sys').executable})
    helpers.run_script(['test.py', helpers.demo_config, checkpoint, '--eval', 'bbox', 'segm',
                        '--work-dir', str(tmp_path / 'single'), *options])
    dist_metric = json.loads(next((tmp_path / 'dist').glob('eval_*.json')).read_text())['metric']
    single_metric = json.loads(next((tmp_path / 'single').glob('eval_*.json')).read_text())['metric']
    assert dist_metric == single_metric  # every image evaluated once, by the same model
