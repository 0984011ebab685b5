"""slurm_train.sh and slurm_test.sh against a real Slurm controller (tools/ci/slurm_up.sh starts a one-host one in
CI): 2 tasks on the CPU form one gloo group, a failing rank ends the step, --auto-resume continues a cancelled job.
Also the Slurm master address of the CPU process group (``_slurm_master_addr``).

The `slurm` tests skip without a controller (`scontrol ping`), and fail instead when REQUIRE_SLURM=1.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
import torch

from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.distributed import _slurm_master_addr

# ----------------------------------------------------------------------------------------------------------
# _slurm_master_addr
# ----------------------------------------------------------------------------------------------------------

# Slurm hostlists and their first host, worked out by hand from Slurm's hostlist syntax.
HOSTLISTS = [
    ('node07', 'node07'),
    ('gpu-a[07-09,12],gpu-b3', 'gpu-a07'),
    ('a[001-004]', 'a001'),
    ('login,c[1-2]', 'login'),
    ('c[5-6]-x[1-2]', 'c5-x1'),
    ('rack[2,4]-n[10-11],spare', 'rack2-n10'),
]


@pytest.fixture()
def slurm_step_env(monkeypatch, tmp_path):
    """A task's Slurm environment without MASTER_ADDR; returns a function putting (fake) programs on PATH."""
    for name in ('MASTER_ADDR', 'SLURM_STEP_NODELIST', 'SLURM_NODELIST', 'SLURM_JOB_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    monkeypatch.setenv('PATH', str(bin_dir))  # no scontrol unless a test puts one there

    def put_program(name: str, text: str) -> None:
        program = bin_dir / name
        program.write_text(text)
        program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return put_program


@pytest.mark.parametrize('node_list, first_host', HOSTLISTS)
def test_without_scontrol_the_first_host_is_read_from_the_node_list(slurm_step_env, monkeypatch, node_list,
                                                                    first_host):
    monkeypatch.setenv('SLURM_NODELIST', node_list)
    assert _slurm_master_addr() == first_host  # not the shell's "scontrol: not found"


@pytest.mark.parametrize('node_list, first_host', HOSTLISTS)
def test_the_node_list_reading_agrees_with_scontrol(slurm_step_env, monkeypatch, node_list, first_host):
    scontrol = shutil.which('scontrol', path=os.defpath + ':/usr/bin:/usr/local/bin')
    if scontrol is None:
        pytest.skip('scontrol is not installed: no reference for the hostlist syntax')
    expanded = subprocess.run([scontrol, 'show', 'hostnames', node_list], capture_output=True, text=True, check=True)
    assert expanded.stdout.split()[0] == first_host


def test_a_working_scontrol_is_asked_first(slurm_step_env, monkeypatch):
    slurm_step_env('scontrol', '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames n[1-2]" ] && printf "n1\\nn2\\n"\n')
    monkeypatch.setenv('SLURM_NODELIST', 'n[1-2]')
    monkeypatch.setenv('PATH', f'{os.environ["PATH"]}:/bin:/usr/bin')  # for the fake's /bin/sh and printf
    assert _slurm_master_addr() == 'n1'


def test_a_failing_scontrol_falls_back_to_the_node_list(slurm_step_env, monkeypatch):
    slurm_step_env('scontrol', '#!/bin/sh\necho "scontrol: error: cannot load slurm.conf" >&2\nexit 1\n')
    monkeypatch.setenv('PATH', f'{os.environ["PATH"]}:/bin:/usr/bin')
    monkeypatch.setenv('SLURM_NODELIST', 'gpu[3-4]')
    assert _slurm_master_addr() == 'gpu3'


def test_the_step_node_list_and_master_addr_take_precedence(slurm_step_env, monkeypatch):
    monkeypatch.setenv('SLURM_NODELIST', 'a[1-8]')
    monkeypatch.setenv('SLURM_STEP_NODELIST', 'a[5-6]')  # an srun step inside a larger allocation
    assert _slurm_master_addr() == 'a5'
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.9')
    assert _slurm_master_addr() == '10.0.0.9'


@pytest.mark.parametrize('node_list', [None, 'a[1-', '[]'])
def test_no_or_unreadable_node_list_is_a_one_line_error(slurm_step_env, monkeypatch, node_list):
    if node_list is not None:
        monkeypatch.setenv('SLURM_NODELIST', node_list)
    with pytest.raises(UserError) as error:
        _slurm_master_addr()
    assert len(str(error.value).splitlines()) == 1
    assert ('SLURM_NODELIST is not set' if node_list is None else repr(node_list)) in str(error.value)


# ----------------------------------------------------------------------------------------------------------
# The launch scripts on a real Slurm controller
# ----------------------------------------------------------------------------------------------------------

JOB_PREFIX = f'internimage-test-{os.getpid()}'


@pytest.fixture(scope='module')
def partition():
    """SLURM_TEST_PARTITION, else the cluster's default partition (the one sinfo marks with *). At the end, this
    session's jobs that are still queued or running (a test that timed out leaves its job) are cancelled."""
    if os.environ.get('SLURM_TEST_PARTITION'):
        name = os.environ['SLURM_TEST_PARTITION']
    else:
        names = subprocess.run(['sinfo', '-h', '-o', '%P'], capture_output=True, text=True, check=True,
                               timeout=60).stdout.split()
        default = [name for name in names if name.endswith('*')]
        name = (default or names)[0].rstrip('*')
    yield name
    jobs = subprocess.run(['squeue', '-h', '-o', '%i %j'], capture_output=True, text=True, timeout=60).stdout
    for job_id, _, job_name in (line.partition(' ') for line in jobs.splitlines()):
        if job_name.startswith(JOB_PREFIX):
            subprocess.run(['scancel', job_id], timeout=60)


def slurm_env(helpers, **overrides: str) -> dict:
    """2 tasks, 1 CPU each (the whole of a 2-core node), this Python, a free port for their process group."""
    return {'GPUS': '2', 'GPUS_PER_NODE': '2', 'CPUS_PER_TASK': '1', 'PYTHON': sys.executable,
            'MASTER_PORT': str(helpers.free_port()), **overrides}


@pytest.fixture(scope='module')
def slurm_train_run(two_image_data, partition, helpers, tmp_path_factory):
    """slurm_train.sh: 2 tasks, one image each, the same global batch as ``single_process_run``."""
    work_dir = tmp_path_factory.mktemp('slurm_train')
    result = helpers.run_script(['sh', 'slurm_train.sh', partition, f'{JOB_PREFIX}-train', helpers.demo_config,
                                 str(work_dir), *helpers.same_batch_train_args(two_image_data, samples_per_gpu=1)],
                                env=slurm_env(helpers), timeout=600)
    return work_dir, result


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_train_two_tasks_form_one_group_and_match_a_single_process_run(slurm_train_run, single_process_run,
                                                                             two_process_run, helpers):
    work_dir, result = slurm_train_run
    helpers.check_distributed_run(work_dir, single_process_run, rtol=0.15)
    # ranks from SLURM_PROCID, as torchrun numbers them: the very losses of dist_train.sh's 2 processes
    helpers.check_distributed_run(work_dir, two_process_run, rtol=1e-5)
    assert '--ntasks=2' in result.stderr  # the srun command line, traced


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_test_matches_test_py(slurm_train_run, shapes_data, partition, helpers, tmp_path):
    checkpoint = str(slurm_train_run[0] / 'iter_3.pth')
    options = ['--eval', 'bbox', 'segm', '--cfg-options', *helpers.tiny_cfg_options(shapes_data)]
    helpers.run_script(['sh', 'slurm_test.sh', partition, f'{JOB_PREFIX}-test', helpers.demo_config, checkpoint,
                        '--work-dir', str(tmp_path / 'slurm'), *options], env=slurm_env(helpers), timeout=600)
    helpers.run_script(['test.py', helpers.demo_config, checkpoint, '--work-dir', str(tmp_path / 'single'), *options])
    assert helpers.read_metric(tmp_path / 'slurm') == helpers.read_metric(tmp_path / 'single')


@pytest.mark.slurm
def test_a_failing_rank_ends_the_whole_step(shapes_data, partition, helpers, tmp_path):
    # rank 1 fails at once; rank 0 then waits for it in the process group's rendezvous (for the 30-min default
    # timeout) unless srun's --kill-on-bad-exit ends the step
    python = tmp_path / 'python_failing_on_rank_1'
    python.write_text('#!/bin/sh\nif [ "$SLURM_PROCID" = 1 ]; then echo "rank 1: planted failure" >&2; exit 3; fi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    work_dir = tmp_path / 'work_dir'
    result = helpers.run_script(['sh', 'slurm_train.sh', partition, f'{JOB_PREFIX}-fail', helpers.demo_config,
                                 str(work_dir), '--no-validate', '--cfg-options',
                                 *helpers.tiny_cfg_options(shapes_data)],
                                env=slurm_env(helpers, PYTHON=str(python)), check=False, timeout=150)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'rank 1: planted failure' in output
    assert re.search(r'task 1: Exited with exit code 3', output), output[-3000:]
    assert not list(work_dir.glob('*.pth'))


@pytest.mark.slurm
@pytest.mark.slow
def test_auto_resume_continues_a_cancelled_job_from_its_last_checkpoint(shapes_data, partition, helpers, tmp_path):
    max_iters = 10  # enough left after iter_2.pth for the cancellation to land mid-run
    job = f'{JOB_PREFIX}-resume'
    work_dir = tmp_path / 'work_dir'
    command = ['sh', 'slurm_train.sh', partition, job, helpers.demo_config, str(work_dir), '--seed', '0',
               '--no-validate', '--auto-resume', '--cfg-options',
               *helpers.tiny_cfg_options(shapes_data, max_iters=max_iters, checkpoint_interval=2)]
    output_file = tmp_path / 'first_job.out'
    process = helpers.start_script(command, output_file, env=slurm_env(helpers))
    try:
        helpers.wait_for_file(work_dir / 'iter_2.pth', process, timeout=300, output_file=output_file)
        subprocess.run(['scancel', '--name', job], check=True)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert 'CANCELLED' in output_file.read_text()
    assert not (work_dir / f'iter_{max_iters}.pth').exists()
    resumed_from = torch.load(work_dir / 'latest.pth', weights_only=False)['meta']['iter']
    assert 2 <= resumed_from < max_iters

    helpers.run_script(command, env=slurm_env(helpers), timeout=600)
    assert torch.load(work_dir / 'latest.pth', weights_only=False)['meta']['iter'] == max_iters
    resumed_log = helpers.read_train_log(work_dir)
    assert [e['iter'] for e in resumed_log] == list(range(resumed_from + 1, max_iters + 1))
    assert re.search(rf'resumed from epoch: \d+, iter {resumed_from}\b', sorted(work_dir.glob('*.log'))[-1].read_text())


def scontrol_job(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields (empty once Slurm has forgotten the job)."""
    out = subprocess.run(['scontrol', 'show', 'job', job_id], capture_output=True, text=True, timeout=60).stdout
    return dict(item.split('=', 1) for item in out.split() if '=' in item)


def wait_until(condition, timeout: float, what: str, details=lambda: '') -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f'{what}: not within {timeout}s\n{details()}')
        time.sleep(0.5)


@pytest.mark.slurm
@pytest.mark.slow
def test_requeue_on_signal_saves_requeues_and_the_job_resumes(shapes_data, partition, helpers, tmp_path):
    max_iters = 12
    work_dir = tmp_path / 'work_dir'
    result = helpers.run_script(['sh', 'slurm_train.sh', partition, f'{JOB_PREFIX}-requeue', helpers.demo_config,
                                 str(work_dir), '--seed', '0', '--no-validate', '--cfg-options',
                                 *helpers.tiny_cfg_options(shapes_data, max_iters=max_iters, checkpoint_interval=100)],
                                env=slurm_env(helpers, REQUEUE='1'), timeout=120)
    job_id = re.search(r'Submitted batch job (\d+)', result.stdout).group(1)
    assert '--requeue' in result.stderr and '--signal=USR1@90' in result.stderr   # the sbatch command line, traced
    output = work_dir / f'slurm-{job_id}.out'
    details = lambda: output.read_text()[-3000:] if output.exists() else 'no job output'  # noqa: E731

    def trained_iterations() -> int:
        logs = sorted(work_dir.glob('*.log.json'))
        return len(helpers.read_train_log(work_dir)) if logs else 0

    wait_until(lambda: trained_iterations() >= 2, 240, 'two logged iterations', details)
    subprocess.run(['scancel', '--signal=USR1', job_id], check=True, timeout=60)   # what --signal=USR1@90 sends
    wait_until(lambda: scontrol_job(job_id).get('Restarts') == '1', 120, 'the job requeued itself', details)
    saved = os.readlink(work_dir / 'latest.pth')
    stopped_at = torch.load(work_dir / saved, weights_only=False)['meta']['iter']
    assert saved == f'iter_{stopped_at}.pth' and 2 <= stopped_at < max_iters
    # Slurm holds a requeued job for 120 s (its BeginTime) before it may start again; CI does not wait for that
    subprocess.run(['scontrol', 'update', f'JobId={job_id}', 'StartTime=now'], check=True, timeout=60)
    wait_until(lambda: scontrol_job(job_id).get('JobState') in ('COMPLETED', 'FAILED', 'CANCELLED', None), 300,
               'the requeued job ended', details)
    assert scontrol_job(job_id).get('JobState') in ('COMPLETED', None), details()
    assert torch.load(work_dir / 'latest.pth', weights_only=False)['meta']['iter'] == max_iters
    text = output.read_text()
    assert f'SIGUSR1 received: saved {work_dir}/{saved}' in text and f'requeueing job {job_id}' in text
    assert re.search(rf'resumed from epoch: \d+, iter {stopped_at}\b', text), text[-3000:]
