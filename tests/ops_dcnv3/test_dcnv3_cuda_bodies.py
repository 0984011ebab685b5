"""The CUDA kernels' per-thread bodies, run on the host by ops_dcnv3._C's harness, against the PyTorch core.

The harness (src/host/dcnv3_cuda_bodies_host.cpp) calls the same functions the CUDA kernels call (common/
dcnv3_cuda_bodies.h) for every thread index, with a host atomic add standing in for atomicAdd and the launchers'
pack choice and opmath accumulation; so these tests cover the CUDA path's index decomposition, sampling and scatter
without a GPU. Every test compares the harness with the pure-PyTorch core (an independent implementation), forward
and backward. Test names contain `cuda`, so `pytest -k cuda` selects them with the real CUDA tests.
"""
from __future__ import annotations

import pytest
import torch

from ops_dcnv3.functions import dcnv3_core_pytorch, load_extension
from tests.ops_dcnv3.dcnv3_cases import (
    KERNEL_CASES,
    UNIT_SCALE_CASES,
    assert_results_close,
    case_inputs,
    forward_backward,
    harness,
    offsets_off_the_grid,
)

_C = load_extension()
pytestmark = pytest.mark.skipif(_C is None or not hasattr(_C, 'cuda_bodies_forward_host'),
                                reason='ops_dcnv3._C with the CUDA-bodies host harness is not built (make setup)')

PACK_BYTES = 16  # kMaxPackBytes of dcnv3_cuda_bodies.h


def packs_for(gc: int, dtype: torch.dtype) -> list[int]:
    """1 (scalar) and, where it divides the group's channels, the 16-byte pack the CUDA launcher would pick."""
    wide = PACK_BYTES // torch.empty((), dtype=dtype).element_size()
    return [1, wide] if gc % wide == 0 else [1]


def params(dtype):
    return [pytest.param(case, pack, id=f'case{i}-pack{pack}') for i, case in enumerate(KERNEL_CASES)
            for pack in packs_for(case[4], dtype)]


FULL_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.mark.parametrize('dtype, case, pack', [(dtype, *p.values) for dtype in FULL_TOLERANCE for p in params(dtype)],
                         ids=[f'{str(dtype)[6:]}-{p.id}' for dtype in FULL_TOLERANCE for p in params(dtype)])
def test_cuda_bodies_match_pytorch_core(dtype, case, pack):
    x, offset, mask, args = case_inputs(case, dtype)
    tol = FULL_TOLERANCE[dtype]
    assert_results_close(forward_backward(harness(pack), x, offset, mask, args),
                         forward_backward(dcnv3_core_pytorch, x, offset, mask, args),
                         rtol=tol, atol=tol, what=f'CUDA bodies (pack {pack}) vs PyTorch core, {dtype}')


# Half inputs, compared with the float64 core on the same rounded values. The bodies accumulate in float (opmath) and
# round once per output, so the error is a few output ulps: float16 has 11 significant bits, bfloat16 8.
HALF_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 6e-2}


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('case_index', UNIT_SCALE_CASES)
def test_cuda_bodies_half_precision_match_float64_core(dtype, case_index):
    case = KERNEL_CASES[case_index]
    x, offset, mask, args = case_inputs(case, torch.float64)
    low = [t.to(dtype) for t in (x, offsets_off_the_grid(offset), mask)]
    expected = forward_backward(dcnv3_core_pytorch, *[t.double() for t in low], args, grad_rounded_to=dtype)
    tol = HALF_TOLERANCE[dtype]
    for pack in packs_for(case[4], dtype):
        actual = forward_backward(harness(pack), *low, args)
        assert all(t.dtype == dtype for t in actual)
        # Gradients scale with the number of contributions: compare relative to each tensor's magnitude.
        for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), actual, expected):
            scale = max(1.0, b.abs().max().item())
            torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * scale,
                                       msg=lambda m, name=name: f'CUDA bodies (pack {pack}) {dtype} {name}: {m}')


def test_cuda_bodies_empty_batch():
    x, offset, mask, args = case_inputs((0, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0))
    out = _C.cuda_bodies_forward_host(x, offset, mask, *args, 64)
    assert out.shape == (0, 6, 7, 16)
    grads = _C.cuda_bodies_backward_host(x, offset, mask, *args, out, 64)
    assert [tuple(g.shape) for g in grads] == [tuple(x.shape), tuple(offset.shape), tuple(mask.shape)]


def test_cuda_bodies_misaligned_input_falls_back_to_scalar_loads():
    # A view starting one element into its storage is not 16-byte aligned: the automatic pack must be 1 (the
    # harness refuses a forced wide pack there), and the result must still match the core.
    x, offset, mask, args = case_inputs(KERNEL_CASES[0], torch.float32)
    shifted = torch.empty(x.numel() + 1, dtype=x.dtype)[1:].view(x.shape).copy_(x)
    assert shifted.data_ptr() % PACK_BYTES != 0 and shifted.is_contiguous()
    torch.testing.assert_close(_C.cuda_bodies_forward_host(shifted, offset, mask, *args, 64, 0),
                               dcnv3_core_pytorch(x, offset, mask, *args), rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match='pack must be'):
        _C.cuda_bodies_forward_host(shifted, offset, mask, *args, 64, 4)
    # Backward with a misaligned grad_output: the offset/mask body falls back to scalar loads too.
    expected = forward_backward(dcnv3_core_pytorch, x, offset, mask, args)
    grad_out = torch.randn(expected[0].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).float()
    grad_shifted = torch.empty(grad_out.numel() + 1)[1:].view(grad_out.shape).copy_(grad_out)
    grads = _C.cuda_bodies_backward_host(x, offset, mask, *args, grad_shifted, 64, 0)
    assert_results_close([expected[0], *grads], expected, rtol=1e-4, atol=1e-4,
                         what='CUDA bodies with a misaligned grad_output vs PyTorch core')
