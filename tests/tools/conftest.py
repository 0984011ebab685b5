"""Shared pieces of the entry-point tests: a tiny synthetic dataset, a tiny demo-config variant, and a runner for
the scripts as users run them (subprocesses in the repository root)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mmcv  # noqa: F401  imported here, outside any test's capsys: mmcv.ProgressBar binds sys.stdout at import
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py'  # tiny variants: no pre-trained weights


def tiny_cfg_options(data_dir: Path, max_iters: int = 4, checkpoint_interval: int = 2,
                     samples_per_gpu: int = 2) -> list[str]:
    """--cfg-options turning the demo config into a seconds-long run on 64-px images."""
    options = [
        'model.backbone.depths=[1,1,1,1]',
        f'runner.max_iters={max_iters}',
        f'checkpoint_config.interval={checkpoint_interval}',
        'checkpoint_config.max_keep_ckpts=-1',
        'log_config.interval=1',
        'lr_config.warmup_iters=2',
        f'data.samples_per_gpu={samples_per_gpu}',
        'data.workers_per_gpu=0',
        'data.train.pipeline.2.img_scale=(64,64)',
        'data.test.pipeline.1.img_scale=(64,64)',
        'data.val.pipeline.1.img_scale=(64,64)',
        # random weights after a few iterations score low: keep every detection so COCO eval has results
        'model.test_cfg.rcnn.score_thr=0.0',
    ]
    for split, folder in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        options += [f'data.{split}.ann_file={data_dir}/annotations/instances_{folder}.json',
                    f'data.{split}.img_prefix={data_dir}/{folder}/']
    return options


def _script_command_and_env(args: list[str], env: dict | None) -> tuple[list[str], dict]:
    full_env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore::DeprecationWarning'}
    full_env.update(env or {})
    command = [sys.executable, *args] if args[0].endswith('.py') else args
    return command, full_env


def run_script(args: list[str], timeout: float = 900, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` (a script and its arguments) from the repository root with the venv's Python."""
    command, full_env = _script_command_and_env(args, env)
    result = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, command))} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result


def start_script(args: list[str], output_file: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``args`` as :func:`run_script` runs them, without waiting; stdout and stderr go to ``output_file``
    (a file, not a pipe: nobody reads a pipe while the test waits, and a full one would stall the run)."""
    command, full_env = _script_command_and_env(args, env)
    with open(output_file, 'w') as output:
        return subprocess.Popen(command, cwd=REPO, env=full_env, stdout=output, stderr=subprocess.STDOUT, text=True)


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float, output_file: Path | None = None) -> None:
    """Wait until ``path`` exists while ``process`` runs; fail with the process's output (``output_file``, else
    its stderr pipe) if it ends first."""
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            output = output_file.read_text() if output_file is not None else process.stderr.read()
            raise AssertionError(f'the run ended before {path.name} appeared:\n{output[-3000:]}')
        if time.time() > deadline:
            raise AssertionError(f'{path.name} did not appear within {timeout}s')
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def read_train_log(work_dir: Path) -> list[dict]:
    """The training entries of the newest ``*.log.json`` in ``work_dir`` (one per logged iteration)."""
    logs = sorted(work_dir.glob('*.log.json'))
    assert logs, f'no json log in {work_dir}'
    entries = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get('mode') == 'train']


@pytest.fixture(scope='session')
def shapes_data(tmp_path_factory) -> Path:
    """A 64-px synthetic shapes dataset: 8 train and 6 val images."""
    out = tmp_path_factory.mktemp('shapes')
    run_script(['tools/make_synthetic_coco.py', '--out', str(out), '--num-train', '8', '--num-val', '6',
                '--size', '64', '--seed', '0'])
    return out


@pytest.fixture(scope='session')
def trained_run(shapes_data, tmp_path_factory) -> Path:
    """A 4-iteration deterministic training run of the tiny demo config; returns its work dir."""
    work_dir = tmp_path_factory.mktemp('trained')
    run_script(['train.py', DEMO_CONFIG, '--work-dir', str(work_dir), '--seed', '0', '--deterministic',
                '--no-validate', '--cfg-options', *tiny_cfg_options(shapes_data)])
    return work_dir


# The same global batch in every distributed-vs-single comparison: the 2 training images, no flips. Per-image
# RPN/RoI sampling is random, so a distributed run agrees with the single process only approximately (and it
# normalises each rank's losses over its own image).
def same_batch_options(data_dir: Path, samples_per_gpu: int) -> list[str]:
    return tiny_cfg_options(data_dir, max_iters=3, checkpoint_interval=3, samples_per_gpu=samples_per_gpu) + [
        'data.train.pipeline.3.flip_ratio=0.0',
        f'data.train.ann_file={data_dir}/annotations/instances_train2.json',
    ]


def same_batch_train_args(data_dir: Path, samples_per_gpu: int) -> list[str]:
    """train.py's arguments after the config and work dir for a ``same_batch_options`` run."""
    return ['--seed', '0', '--no-validate', '--cfg-options', *same_batch_options(data_dir, samples_per_gpu)]


@pytest.fixture(scope='session')
def two_image_data(shapes_data) -> Path:
    """The shared dataset's first 2 training images as their own annotation file (instances_train2.json)."""
    content = json.loads((shapes_data / 'annotations' / 'instances_train.json').read_text())
    keep = {image['id'] for image in content['images'][:2]}
    content['images'] = [i for i in content['images'] if i['id'] in keep]
    content['annotations'] = [a for a in content['annotations'] if a['image_id'] in keep]
    (shapes_data / 'annotations' / 'instances_train2.json').write_text(json.dumps(content))
    return shapes_data


@pytest.fixture(scope='session')
def single_process_run(two_image_data, tmp_path_factory) -> Path:
    """train.py, one process, both images in each batch: the reference of the distributed runs."""
    work_dir = tmp_path_factory.mktemp('single_process')
    run_script(['train.py', DEMO_CONFIG, '--work-dir', str(work_dir),
                *same_batch_train_args(two_image_data, samples_per_gpu=2)])
    return work_dir


@pytest.fixture(scope='session')
def two_process_run(two_image_data, tmp_path_factory) -> Path:
    """dist_train.sh with 2 CPU processes on one node, one image each."""
    work_dir = tmp_path_factory.mktemp('two_process')
    run_script(['sh', 'dist_train.sh', DEMO_CONFIG, '2', '--work-dir', str(work_dir),
                *same_batch_train_args(two_image_data, samples_per_gpu=1)],
               env={'PORT': str(free_port()), 'PYTHON': sys.executable}, timeout=400)
    return work_dir


def check_distributed_run(work_dir: Path, reference_dir: Path, rtol: float) -> None:
    """A distributed ``same_batch_options`` run: one gloo group of 2 processes, one checkpoint set (rank 0's),
    and its losses within ``rtol`` of the run in ``reference_dir``."""
    text_log = next(work_dir.glob('*.log')).read_text()
    assert 'Distributed training: True (backend gloo)' in text_log
    assert 'gpu_ids = range(0, 2)' in text_log  # train.py sets gpu_ids to range(world size)
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_3.pth', 'latest.pth']
    assert torch.load(work_dir / 'iter_3.pth', weights_only=False)['meta']['iter'] == 3
    run_log, reference_log = read_train_log(work_dir), read_train_log(reference_dir)
    assert [e['iter'] for e in run_log] == [e['iter'] for e in reference_log] == [1, 2, 3]
    np.testing.assert_allclose([e['loss'] for e in run_log], [e['loss'] for e in reference_log], rtol=rtol)


def read_metric(work_dir: Path) -> dict:
    """The metrics test.py wrote into ``work_dir`` (its eval_*.json)."""
    return json.loads(next(work_dir.glob('eval_*.json')).read_text())['metric']


def load_entry_point(name: str):
    """Import a repository-root script (train.py, test.py...) as a module under a private name: ``test`` would
    otherwise clash with the standard library's ``test`` package."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'_entry_{name}', REPO / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(name: str, argv: list[str]) -> int:
    """Run an entry point's ``main`` as its ``__main__`` block does (one-line errors); returns the exit status."""
    module = load_entry_point(name)
    try:
        module.run_cli(lambda: module.main(argv), f'{name}.py')
    except SystemExit as exit_info:
        return exit_info.code if isinstance(exit_info.code, int) else 1
    finally:
        _reset_loggers()
    return 0


def _reset_loggers() -> None:
    """Forget the loggers an in-process run set up (their log files belong to that run's temporary work dir)."""
    import logging

    from mmcv.utils.logging import logger_initialized
    for name in list(logger_initialized):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
    logger_initialized.clear()


class Helpers:
    """The helpers above, for test modules (conftest modules are not importable under --import-mode=importlib)."""
    repo = REPO
    demo_config = DEMO_CONFIG
    tiny_cfg_options = staticmethod(tiny_cfg_options)
    run_script = staticmethod(run_script)
    start_script = staticmethod(start_script)
    wait_for_file = staticmethod(wait_for_file)
    free_port = staticmethod(free_port)
    same_batch_train_args = staticmethod(same_batch_train_args)
    check_distributed_run = staticmethod(check_distributed_run)
    read_metric = staticmethod(read_metric)
    read_train_log = staticmethod(read_train_log)
    load_entry_point = staticmethod(load_entry_point)
    run_in_process = staticmethod(run_in_process)


@pytest.fixture(scope='session')
def helpers() -> type[Helpers]:
    return Helpers
