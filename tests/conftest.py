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
