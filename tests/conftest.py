"""Shared test settings: deterministic, small, CPU-only."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # entry points and configs are addressed relative to the repo root
    sys.path.insert(0, str(REPO))

os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import torch
    random.seed(0)
    torch.manual_seed(0)
    try:  # a bare GPU machine (tools/gpu_check.sh) may have torch without numpy
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        np.random.seed(0)
    yield


@pytest.fixture
def compiled_core_calls(monkeypatch) -> list:
    """Records the device type of every call the DCNv3 modules make to the compiled core (DCNv3Function), so a
    test of core_op='DCNv3' can assert the compiled kernel really ran instead of the PyTorch fallback."""
    import ops_dcnv3.functions.dcnv3_func as dcnv3_func
    calls: list = []
    real = dcnv3_func.DCNv3Function

    class CountingFunction:
        @staticmethod
        def apply(*args):
            calls.append(args[0].device.type)
            return real.apply(*args)

    monkeypatch.setattr(dcnv3_func, 'DCNv3Function', CountingFunction)
    return calls


@pytest.fixture
def gloo_world_of_one():
    """A one-process gloo group on the CPU, for the distributed patches (tests/apis, tests/mmcv_custom)."""
    import socket

    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@functools.lru_cache(maxsize=1)
def _slurm_unavailable() -> str | None:
    """Why no Slurm controller can run the `slurm` tests, or None when `scontrol ping` finds one UP."""
    if shutil.which('scontrol') is None:
        return 'scontrol is not installed'
    try:
        result = subprocess.run(['scontrol', 'ping'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f'`scontrol ping` failed ({error})'
    if result.returncode != 0 or ' is UP' not in result.stdout:
        answer = (result.stdout + result.stderr).strip().splitlines()
        return f'no Slurm controller answers `scontrol ping` ({answer[0] if answer else result.returncode})'
    return None


_EXTENSION_MISSING = 'is not built'  # the words of every skip for a missing compiled op extension


def _require_ext(report) -> None:
    """REQUIRE_EXT=1 (CI: .ci/run): a skip because a compiled op extension is not built fails instead."""
    if os.environ.get('REQUIRE_EXT') != '1' or not report.skipped:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _EXTENSION_MISSING in reason:
        report.outcome = 'failed'
        report.longrepr = f'REQUIRE_EXT=1 but {reason.removeprefix("Skipped: ")}'


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _require_ext(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _require_ext(outcome.get_result())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """`slurm` tests skip without a controller, but fail when REQUIRE_SLURM=1 (CI starts one: .ci/run)."""
    if item.get_closest_marker('slurm') is None:
        return
    problem = _slurm_unavailable()
    if problem is None:
        return
    hint = 'start one with `sudo bash tools/ci/slurm_up.sh`'
    if os.environ.get('REQUIRE_SLURM') == '1':
        pytest.fail(f'REQUIRE_SLURM=1 but {problem}; {hint}', pytrace=False)
    pytest.skip(f'{problem}; {hint}')
