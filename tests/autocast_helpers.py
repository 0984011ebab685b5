"""Autocast on CUDA without a GPU: modules moved to ``cuda`` inside a ``FakeTensorMode`` run their forward through
the real CUDA autocast policy (which differs from the CPU's: e.g. softmax, layer_norm and grid_sample run in
float32), with shapes and dtypes computed and no kernel launched. The autograd engine needs a real device, so
backward is checked under CPU autocast instead (see the tests)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


@contextlib.contextmanager
def without_compiled_kernels() -> Iterator[None]:
    """Every DCNv3/DCNv4 route on its PyTorch fallback: fake tensors cannot enter the compiled kernels (no fake
    implementation is registered for them), so the kernel routes are checked on a real GPU (tools/gpu_check.sh)."""
    from ops_dcnv3.functions.dcnv3_func import EXTENSION as DCNV3
    from ops_dcnv4.functions.dcnv4_func import EXTENSION as DCNV4
    for loader in (DCNV3, DCNV4):
        loader.load = lambda: None  # an instance attribute hides the method: routing sees no extension
    try:
        yield
    finally:
        for loader in (DCNV3, DCNV4):
            del loader.load


@contextlib.contextmanager
def fake_cuda_autocast(dtype: torch.dtype) -> Iterator[FakeTensorMode]:
    """Fake tensors (``torch.randn(..., device='cuda')`` works without a GPU) under CUDA autocast to ``dtype``."""
    enabled, previous_dtype = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        torch.set_autocast_enabled('cuda', True)
        torch.set_autocast_dtype('cuda', dtype)
        try:
            yield mode
        finally:
            torch.set_autocast_enabled('cuda', enabled)
            torch.set_autocast_dtype('cuda', previous_dtype)


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 0.02) -> None:
    """Relative L2 error below ``tolerance``: elementwise bounds do not fit half-precision rounding of values near
    zero."""
    error = (actual.float() - expected.float()).norm() / expected.float().norm()
    assert error < tolerance, f'relative L2 error {error:.4f} >= {tolerance}'
