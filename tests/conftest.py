"""Shared test settings: deterministic, small, CPU-only."""
import os
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
    import ops_dcnv3.modules.dcnv3 as dcnv3_module
    calls: list = []
    real = dcnv3_module.DCNv3Function

    class CountingFunction:
        @staticmethod
        def apply(*args):
            calls.append(args[0].device.type)
            return real.apply(*args)

    monkeypatch.setattr(dcnv3_module, 'DCNv3Function', CountingFunction)
    return calls
