"""DCNv4 on a GPU: the CUDA kernel against the CPU kernel and the pure-PyTorch reference (marker `cuda`).

Skipped, with the reason, where no CUDA device is visible or ops_dcnv4._C was built without CUDA.
"""
from __future__ import annotations

import pytest
import torch

from ops_dcnv4.functions import DCNv4Function, load_extension
from tests.ops_dcnv4.dcnv4_cases import (
    HALF_TOLERANCE,
    KERNEL_CASES,
    KERNEL_IDS,
    assert_results_close,
    cuda_kernel_skip_reason,
    float64_kernel_on_rounded_inputs,
    make_case,
    run_core,
)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(cuda_kernel_skip_reason() is not None,
                                                  reason=str(cuda_kernel_skip_reason()))]


@pytest.mark.parametrize('case', KERNEL_CASES, ids=KERNEL_IDS)
@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=['float64', 'float32'])
def test_cuda_kernel_matches_cpu_kernel_and_reference(case, dtype, tol):
    cuda = run_core('kernel', case, dtype, device='cuda')
    assert all(t.is_cuda for t in cuda)
    assert_results_close(cuda, run_core('reference', case, dtype), tol)
    assert_results_close(cuda, run_core('kernel', case, dtype), tol)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', [KERNEL_CASES[1], KERNEL_CASES[3]], ids=['remove_center', 'k5'])
def test_cuda_kernel_half_precision(case, dtype):
    assert_results_close(run_core('kernel', case, dtype, device='cuda'), float64_kernel_on_rounded_inputs(case, dtype),
                         HALF_TOLERANCE[dtype])


def test_cuda_kernel_gradcheck_float64_and_padding_gradient():
    x, offset_mask = make_case(2, 4, 3, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, True, offset_std=1.5)
    inputs = (x.cuda().requires_grad_(), offset_mask.cuda().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b: DCNv4Function.apply(a, b, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.3, 64, True), inputs,
        eps=1e-6, atol=1e-6, rtol=1e-5)
    x, offset_mask = make_case(1, 6, 7, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1)  # 27 used channels of 32
    offset_mask[..., 27:] = float('nan')
    ext = load_extension()
    out = ext.dcnv4_forward(x.cuda(), offset_mask.cuda(), 3, 3, 1, 1, 1, 1, 1, 1, 1, 16, 1.0, 64, 0)
    grads = ext.dcnv4_backward(x.cuda(), offset_mask.cuda(), torch.ones_like(out), 3, 3, 1, 1, 1, 1, 1, 1, 1, 16,
                               1.0, 64, 0)
    assert torch.isfinite(out).all() and torch.all(grads[1][..., 27:] == 0) and torch.isfinite(grads[1]).all()


def test_cuda_kernel_misaligned_views():
    """Contiguous views starting one element into their storage (not 16-byte aligned) give the aligned results."""
    x, offset_mask = make_case(2, 5, 6, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, offset_std=1.5)
    x, offset_mask = x.float().cuda(), offset_mask.float().cuda()
    shifted = [torch.empty(t.numel() + 1, device='cuda')[1:].view(t.shape).copy_(t) for t in (x, offset_mask)]
    assert all(t.is_contiguous() and t.data_ptr() % 16 != 0 for t in shifted)
    ext = load_extension()
    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0, 64, 0)
    grad_out = torch.randn(2, 5, 6, 16, device='cuda')
    expected = [ext.dcnv4_forward(x, offset_mask, *args)] + list(ext.dcnv4_backward(x, offset_mask, grad_out, *args))
    actual = [ext.dcnv4_forward(*shifted, *args)] + list(ext.dcnv4_backward(*shifted, grad_out, *args))
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
