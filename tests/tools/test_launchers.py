"""dist_train.sh / dist_test.sh on the CPU (torchrun + gloo) and the srun command lines of the Slurm scripts."""
from __future__ import annotations

import os
import stat
import sys

import pytest


@pytest.mark.slow
def test_dist_train_two_cpu_processes_match_a_single_process_run(two_process_run, single_process_run, helpers):
    helpers.check_distributed_run(two_process_run, single_process_run, rtol=0.15)


def run_two_nodes(helpers, entry_args: list[str], output_dir, timeout: float = 400) -> None:
    """``sh ENTRY_ARGS`` as the two "nodes" of a torchrun job on this machine: two launchers, one process each."""
    port = helpers.free_port()
    outputs = [output_dir / f'node{node_rank}.out' for node_rank in (0, 1)]
    nodes = [helpers.start_script(['sh', *entry_args], output, env={
        'NNODES': '2', 'NODE_RANK': str(node_rank), 'MASTER_ADDR': '127.0.0.1', 'PORT': str(port),
        'PYTHON': sys.executable}) for node_rank, output in enumerate(outputs)]
    try:
        for node in nodes:
            node.wait(timeout=timeout)
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node_rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f'node {node_rank} failed ({node.returncode}):\n{output.read_text()[-4000:]}'


@pytest.mark.slow
def test_dist_train_two_nodes_match_the_single_node_two_process_run(two_image_data, two_process_run, helpers,
                                                                    tmp_path):
    # both "nodes" share the work dir, as cluster nodes share a file system
    work_dir = tmp_path / 'work_dir'
    run_two_nodes(helpers, ['dist_train.sh', helpers.demo_config, '1', '--work-dir', str(work_dir),
                            *helpers.same_batch_train_args(two_image_data, samples_per_gpu=1)], tmp_path)
    # the same 2 ranks with the same seeds and images as on one node: the same losses up to float rounding
    helpers.check_distributed_run(work_dir, two_process_run, rtol=1e-5)


@pytest.fixture()
def fake_slurm(tmp_path):
    """An `srun` on PATH that records its arguments (one per line) and environment and runs nothing, and an `sinfo`
    that prints ``tmp_path/sinfo_partition`` for `sinfo -p ...` and ``tmp_path/sinfo_all`` otherwise (and fails
    when the file is missing, like an sinfo that cannot reach its controller)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_record'
    scripts = {
        'srun': f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}.args\nenv > {record}.env\n',
        'sinfo': (f'#!/bin/sh\nfile={tmp_path}/sinfo_all\nfor a in "$@"; do [ "$a" = -p ] && '
                  f'file={tmp_path}/sinfo_partition; done\ncat "$file" 2>/dev/null || exit 1\n'),
    }
    for name, text in scripts.items():
        script = bin_dir / name
        script.write_text(text)
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'PYTHON': 'python3'}
    return env, record


def set_partitions(record, partition_lines: str, all_partitions: str = 'debug\ngpu_part\n') -> None:
    """What the fake sinfo prints: "NAME GRES" lines of the asked partition, and the cluster's partitions."""
    (record.parent / 'sinfo_partition').write_text(partition_lines)
    (record.parent / 'sinfo_all').write_text(all_partitions)


def read_record(record):
    args = record.with_suffix('.args').read_text().splitlines()
    env = dict(line.split('=', 1) for line in record.with_suffix('.env').read_text().splitlines() if '=' in line)
    return args, env


def test_slurm_train_builds_the_original_srun_command(fake_slurm, helpers):
    env, record = fake_slurm
    set_partitions(record, 'gpu_part gpu:8\ngpu_part gpu:a100:8(S:0-1)\n')
    helpers.run_script(['sh', 'slurm_train.sh', 'gpu_part', 'my_job', helpers.demo_config, 'work_dirs/x',
                        '--seed', '1', '--auto-resume'],
                       env={**env, 'GPUS': '16', 'SRUN_ARGS': '--quotatype=spot --time=1:00:00'})
    args, srun_env = read_record(record)
    repo = str(helpers.repo)
    assert args == ['-p', 'gpu_part', '--job-name=my_job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                    '--cpus-per-task=10', '--kill-on-bad-exit=1', '--quotatype=spot', '--time=1:00:00',
                    'python3', '-u', f'{repo}/train.py', helpers.demo_config, '--work-dir=work_dirs/x',
                    '--launcher=slurm', '--seed', '1', '--auto-resume']
    assert srun_env['PYTHONPATH'].split(':')[0] == repo


def test_slurm_test_defaults_and_overrides(fake_slurm, helpers, tmp_path):
    env, record = fake_slurm
    set_partitions(record, 'p1 gpu:4\n', 'p1\n')
    checkpoint = tmp_path / 'ckpt.pth'
    checkpoint.write_bytes(b'')
    helpers.run_script(['sh', 'slurm_test.sh', 'p1', 'eval', helpers.demo_config, str(checkpoint),
                        '--eval', 'bbox', 'segm'], env={**env, 'GPUS_PER_NODE': '4', 'GPUS': '4'})
    args, _ = read_record(record)
    assert args == ['-p', 'p1', '--job-name=eval', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4',
                    '--cpus-per-task=5', '--kill-on-bad-exit=1', 'python3', '-u', f'{helpers.repo}/test.py',
                    helpers.demo_config, str(checkpoint), '--launcher=slurm', '--eval', 'bbox', 'segm']


# (fake sinfo's partition lines or None for an sinfo that fails, GPU_GRES, whether --gres is passed)
GRES_CASES = [
    ('debug (null)\n', None, False),           # a CPU-only partition: no gres, the tasks run on the CPU
    ('gpu_part gpu:2\n', None, True),
    ('debug (null)\n', '1', True),             # asked for explicitly
    ('gpu_part gpu:2\n', '0', False),           # a GPU partition used without GPUs
    (None, None, True),                         # sinfo cannot tell: as the original scripts
    (None, '0', False),
]


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
@pytest.mark.parametrize('sinfo_lines, gpu_gres, expect_gres', GRES_CASES)
def test_slurm_scripts_request_gpus_only_where_there_are_some(fake_slurm, helpers, script, sinfo_lines, gpu_gres,
                                                              expect_gres):
    env, record = fake_slurm
    if sinfo_lines is not None:
        set_partitions(record, sinfo_lines)
    env = {**env, 'GPUS': '2', 'GPUS_PER_NODE': '2', 'CPUS_PER_TASK': '1',
           **({'GPU_GRES': gpu_gres} if gpu_gres is not None else {})}
    last_argument = helpers.demo_config if script == 'slurm_test.sh' else 'work_dirs/x'  # the config as checkpoint
    result = helpers.run_script(['sh', script, 'debug', 'demo', helpers.demo_config, last_argument], env=env)
    args, _ = read_record(record)
    gres = ['--gres=gpu:2'] if expect_gres else []
    assert args[:8 + len(gres)] == ['-p', 'debug', '--job-name=demo', *gres, '--ntasks=2', '--ntasks-per-node=2',
                                    '--cpus-per-task=1', '--kill-on-bad-exit=1', 'python3']
    if sinfo_lines is not None and sinfo_lines.endswith('(null)\n') and not expect_gres:
        assert 'partition debug has no GPUs' in result.stderr


@pytest.mark.parametrize('script, arguments, env, message', [
    ('slurm_train.sh', ['debug', 'j', 'configs/missing.py', 'wd'], {},
     'slurm_train.sh: error: config file configs/missing.py does not exist'),
    ('slurm_test.sh', ['debug', 'j', 'configs/missing.py', 'c.pth'], {},
     'slurm_test.sh: error: config file configs/missing.py does not exist'),
    ('slurm_test.sh', ['debug', 'j', None, 'missing.pth'], {},
     'slurm_test.sh: error: checkpoint missing.pth does not exist'),
    ('slurm_train.sh', ['nopart', 'j', None, 'wd'], {},
     'slurm_train.sh: error: partition nopart does not exist (sinfo lists: debug gpu_part)'),
    ('slurm_train.sh', ['debug', 'j', None, 'wd'], {'GPUS': 'two'},
     'slurm_train.sh: error: GPUS=two: expected a positive integer'),
    ('slurm_test.sh', ['debug', 'j', None, None], {'GPUS_PER_NODE': '0'},
     'slurm_test.sh: error: GPUS_PER_NODE=0: expected a positive integer'),
    ('slurm_train.sh', ['debug', 'j', None, 'wd'], {'CPUS_PER_TASK': '-1'},
     'slurm_train.sh: error: CPUS_PER_TASK=-1: expected a positive integer'),
    ('slurm_train.sh', ['debug', 'j', None, 'wd'], {'GPU_GRES': 'yes'},
     'slurm_train.sh: error: GPU_GRES=yes: expected auto, 1 or 0'),
])
def test_slurm_scripts_stop_at_bad_input_with_one_line(fake_slurm, helpers, script, arguments, env, message):
    fake_env, record = fake_slurm
    set_partitions(record, '' if arguments[0] == 'nopart' else 'debug (null)\n')
    arguments = [helpers.demo_config if argument is None else argument for argument in arguments]
    result = helpers.run_script(['sh', script, *arguments], env={**fake_env, **env}, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [message]
    assert not record.with_suffix('.args').exists()  # nothing submitted


def test_launch_scripts_print_usage_without_arguments(helpers):
    for script in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh'):
        result = helpers.run_script(['sh', script], check=False)
        assert result.returncode != 0
        assert f'usage: sh {script}' in result.stderr


@pytest.fixture(scope='module')
def single_test_metric(trained_run, shapes_data, helpers, tmp_path_factory):
    """test.py's metrics for the trained run's checkpoint, on the tiny val split."""
    work_dir = tmp_path_factory.mktemp('test_py')
    helpers.run_script(['test.py', helpers.demo_config, str(trained_run / 'latest.pth'), '--eval', 'bbox', 'segm',
                        '--work-dir', str(work_dir), '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    return helpers.read_metric(work_dir)


@pytest.mark.slow
def test_dist_test_two_cpu_processes_match_a_single_process_test(trained_run, shapes_data, single_test_metric, helpers,
                                                                 tmp_path):
    helpers.run_script(['sh', 'dist_test.sh', helpers.demo_config, str(trained_run / 'latest.pth'), '2',
                        '--eval', 'bbox', 'segm', '--work-dir', str(tmp_path),
                        '--cfg-options', *helpers.tiny_cfg_options(shapes_data)],
                       env={'PORT': str(helpers.free_port()), 'PYTHON': sys.executable})
    assert helpers.read_metric(tmp_path) == single_test_metric  # every image evaluated once, by the same model


@pytest.mark.slow
def test_dist_test_two_nodes_match_a_single_process_test(trained_run, shapes_data, single_test_metric, helpers,
                                                         tmp_path):
    run_two_nodes(helpers, ['dist_test.sh', helpers.demo_config, str(trained_run / 'latest.pth'), '1',
                            '--eval', 'bbox', 'segm', '--work-dir', str(tmp_path / 'work_dir'),
                            '--cfg-options', *helpers.tiny_cfg_options(shapes_data)], tmp_path)
    assert helpers.read_metric(tmp_path / 'work_dir') == single_test_metric
