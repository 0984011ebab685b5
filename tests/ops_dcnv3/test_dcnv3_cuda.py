"""DCNv3 on a GPU: the CUDA kernel against the CPU kernel and the pure-PyTorch core (marker `cuda`).

Skipped, with the reason, where no CUDA device is visible or ops_dcnv3._C was built without CUDA. Imports torch and
ops_dcnv3 only (no mmcv/mmdet), so tools/gpu_check.sh runs it on a bare GPU machine. Tolerances, relative to each
tensor's magnitude: float64 1e-10; float32 1e-5 against the CPU kernel, 1e-4 against the float64 core; float16 1e-2
and bfloat16 6e-2 against the float64 core on the same rounded inputs (the kernel accumulates in float and rounds
once).
"""
from __future__ import annotations

import pytest
import torch

from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch
from tests.ops_dcnv3.dcnv3_cases import (
    KERNEL_CASES,
    UNIT_SCALE_CASES,
    assert_results_close,
    case_inputs,
    cuda_kernel_skip_reason,
    forward_backward,
    offsets_off_the_grid,
)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(cuda_kernel_skip_reason() is not None,
                                                  reason=str(cuda_kernel_skip_reason()))]

HALF_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 6e-2}


def kernel(im2col_step: int = 64):
    return lambda x, offset, mask, *args: DCNv3Function.apply(x, offset, mask, *args, im2col_step)


def on(device, tensors):
    return [t.to(device) for t in tensors]


def assert_close_scaled(actual, expected, tol: float, what: str) -> None:
    """Each of [output, grad_input, grad_offset, grad_mask] within tol relative to that tensor's largest value."""
    for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), actual, expected):
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a.cpu().double(), b.cpu().double(), rtol=tol, atol=tol * scale,
                                   msg=lambda m, name=name: f'{what}, {name}: {m}')


@pytest.mark.parametrize('case', KERNEL_CASES, ids=[f'case{i}' for i in range(len(KERNEL_CASES))])
def test_cuda_float64_matches_cpu_kernel_and_pytorch_core(case):
    x, offset, mask, args = case_inputs(case, torch.float64)
    cuda = forward_backward(kernel(im2col_step=2), *on('cuda', (x, offset, mask)), args)
    cpu = forward_backward(kernel(im2col_step=2), x, offset, mask, args)
    core = forward_backward(dcnv3_core_pytorch, x, offset, mask, args)
    cuda = [t.cpu() for t in cuda]
    assert_results_close(cuda, cpu, rtol=1e-10, atol=1e-10, what='CUDA kernel vs CPU kernel, float64')
    assert_results_close(cuda, core, rtol=1e-10, atol=1e-10, what='CUDA kernel vs PyTorch core, float64')


@pytest.mark.parametrize('case', KERNEL_CASES, ids=[f'case{i}' for i in range(len(KERNEL_CASES))])
def test_cuda_float32_matches_cpu_kernel_float32(case):
    # Both kernels compute the sampling locations with the same header in float: they differ by rounding order only.
    x, offset, mask, args = case_inputs(case, torch.float32)
    cuda = forward_backward(kernel(), *on('cuda', (x, offset, mask)), args)
    cpu = forward_backward(kernel(), x, offset, mask, args)
    assert_close_scaled(cuda, cpu, 1e-5, 'CUDA kernel vs CPU kernel, float32')


@pytest.mark.parametrize('case_index', UNIT_SCALE_CASES)
def test_cuda_float32_matches_float64_core_and_cuda_pytorch_core(case_index):
    # Offsets off the integer grid: float32 locations computed another way (grid_sample normalises them) must not
    # fall on the other side of a pixel boundary, where the offset gradient jumps.
    x, offset, mask, args = case_inputs(KERNEL_CASES[case_index], torch.float64)
    low = on('cuda', [t.float() for t in (x, offsets_off_the_grid(offset), mask)])
    cuda = forward_backward(kernel(), *low, args)
    expected = forward_backward(dcnv3_core_pytorch, *[t.double().cpu() for t in low], args,
                                grad_rounded_to=torch.float32)
    assert_close_scaled(cuda, expected, 1e-4, 'CUDA kernel float32 vs PyTorch core float64')
    core_cuda = forward_backward(dcnv3_core_pytorch, *low, args)
    assert_close_scaled(cuda, core_cuda, 1e-3, 'CUDA kernel vs PyTorch core, both float32 on CUDA')


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('case_index', UNIT_SCALE_CASES)
def test_cuda_half_precision_matches_float64_core(case_index, dtype):
    x, offset, mask, args = case_inputs(KERNEL_CASES[case_index], torch.float64)
    low = on('cuda', [t.to(dtype) for t in (x, offsets_off_the_grid(offset), mask)])
    cuda = forward_backward(kernel(), *low, args)
    assert all(t.dtype == dtype for t in cuda)
    expected = forward_backward(dcnv3_core_pytorch, *[t.double().cpu() for t in low], args,
                                grad_rounded_to=dtype)
    assert_close_scaled(cuda, expected, HALF_TOLERANCE[dtype], f'CUDA kernel {dtype} vs PyTorch core float64')


@pytest.mark.parametrize('geometry', [
    (2, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1.3, 1.5),
    (1, 7, 6, 2, 2, 3, 5, 2, 1, 0, 2, 2, 1, 0.8, 1.5),
    (1, 5, 7, 2, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 1.5),  # group_channels 4 = the float64 pack of 2, twice
], ids=['basic', 'stride-dilation-uneven-pad', 'packed'])
def test_cuda_gradcheck_float64(geometry):
    x, offset, mask, args = case_inputs(geometry, torch.float64, device='cuda')
    inputs = tuple(t.requires_grad_() for t in (x, offset, mask))
    assert torch.autograd.gradcheck(lambda a, b, c: DCNv3Function.apply(a, b, c, *args, 64), inputs,
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


def test_cuda_non_contiguous_and_misaligned_inputs():
    x, offset, mask, args = case_inputs(KERNEL_CASES[0], torch.float32, device='cuda')
    expected = forward_backward(kernel(), x, offset, mask, args)
    # Same values, other memory layouts: a transposed copy viewed back, a strided slice, and a contiguous tensor
    # starting one element into its storage (not 16-byte aligned: the kernel must fall back to scalar loads).
    x_strided = x.transpose(1, 2).contiguous().transpose(1, 2)
    offset_strided = torch.cat([offset, offset], dim=-1)[..., :offset.shape[-1]]
    mask_shifted = torch.empty(mask.numel() + 1, device='cuda')[1:].view(mask.shape).copy_(mask)
    x_shifted = torch.empty(x.numel() + 1, device='cuda')[1:].view(x.shape).copy_(x)
    assert not (x_strided.is_contiguous() or offset_strided.is_contiguous())
    assert x_shifted.data_ptr() % 16 != 0 and mask_shifted.data_ptr() % 16 != 0
    for inputs in ((x_strided, offset_strided, mask), (x_shifted, offset, mask_shifted)):
        # keep_layout: a clone would hand the kernel fresh, aligned storage and test nothing
        assert_results_close(forward_backward(kernel(), *inputs, args, keep_layout=True), expected, rtol=1e-6,
                             atol=1e-6, what='CUDA kernel, other memory layout vs contiguous')


def test_cuda_empty_batch():
    x, offset, mask, args = case_inputs((0, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0), device='cuda')
    out, grad_x, grad_offset, grad_mask = forward_backward(kernel(), x, offset, mask, args)
    assert out.shape == (0, 6, 7, 16) and out.is_cuda
    assert grad_x.shape == x.shape and grad_offset.shape == offset.shape and grad_mask.shape == mask.shape


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs a second CUDA device (cuda:1)')
def test_cuda_second_device_gives_the_same_result():
    x, offset, mask, args = case_inputs(KERNEL_CASES[2], torch.float64)
    first = forward_backward(kernel(), *on('cuda:0', (x, offset, mask)), args)
    second = forward_backward(kernel(), *on('cuda:1', (x, offset, mask)), args)
    assert all(t.device == torch.device('cuda:1') for t in second)
    assert_results_close([t.cpu() for t in second], [t.cpu() for t in first], rtol=1e-12, atol=1e-12,
                         what='cuda:1 vs cuda:0')


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
def test_cuda_dcnv3_module_under_autocast(dtype):
    from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
    torch.manual_seed(0)
    reference = DCNv3_pytorch(channels=64, group=4).cuda()
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    module = DCNv3(channels=64, group=4).cuda()
    module.load_state_dict(reference.state_dict())
    x = torch.randn(2, 9, 11, 64, device='cuda')
    expected = reference(x)
    with torch.autocast('cuda', dtype=dtype):
        out = module(x)
    assert out.dtype == dtype
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=HALF_TOLERANCE[dtype] * 5 * scale)
