"""Shared pieces of the entry-point tests: a tiny synthetic dataset, a tiny demo-config variant, and a runner for
the scripts as users run them (subprocesses in the repository root)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mmcv  # noqa: F401  imported here, outside any test's capsys: mmcv.ProgressBar binds sys.stdout at import
import pytest

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


def run_script(args: list[str], timeout: float = 900, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` (a script and its arguments) from the repository root with the venv's Python."""
    full_env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore::DeprecationWarning'}
    full_env.update(env or {})
    command = [sys.executable, *args] if args[0].endswith('.py') else args
    result = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, command))} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result


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
    read_train_log = staticmethod(read_train_log)
    load_entry_point = staticmethod(load_entry_point)
    run_in_process = staticmethod(run_in_process)


@pytest.fixture(scope='session')
def helpers() -> type[Helpers]:
    return Helpers
