"""Shared DCNv4 test cases: random inputs in the packed layout, the kernel geometry sweep, any core's results."""
from __future__ import annotations

import torch

from ops_dcnv4.functions import DCNv4Function, dcnv4_core_pytorch, load_extension, offset_mask_channels


def cuda_kernel_skip_reason() -> str | None:
    """Why the CUDA DCNv4 kernel cannot run here (the skip reason of every `cuda` test), or None."""
    if not torch.cuda.is_available():
        return 'no CUDA device (torch.cuda.is_available() is False)'
    extension = load_extension()
    if extension is None:
        return 'ops_dcnv4._C is not built (make setup)'
    if not extension.with_cuda:
        return 'ops_dcnv4._C was built without CUDA (rebuild where nvcc and a CUDA torch are present)'
    return None


def output_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, remove_center=False, offset_std=2.0,
              dtype=torch.float64):
    """Random input and packed offset_mask; the mask is raw (signed, not normalised) as DCNv4 allows."""
    Ho, Wo = output_size(H, kh, sh, ph, dh), output_size(W, kw, sw, pw, dw)
    x = torch.randn(N, H, W, group * gc, dtype=dtype)
    offset_mask = torch.randn(N, Ho, Wo, offset_mask_channels(group, kh, kw, remove_center), dtype=dtype)
    K = kh * kw - int(remove_center)
    per_group = offset_mask[..., :group * 3 * K].view(N, Ho, Wo, group, 3 * K)
    per_group[..., :2 * K] *= offset_std
    return x, offset_mask


# Kernel geometries: group_channels 8/16/32 (the register specialisations) and others (the generic loops), kernel 3
# and 5 with and without the centre, stride, dilation, (uneven) padding, odd sizes, samples pushed out of the image.
# (N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale, remove_center, offset_std)
KERNEL_CASES = [
    (2, 9, 11, 4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, False, 2.0),
    (1, 10, 7, 2, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, True, 2.0),
    (3, 8, 9, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1.0, False, 2.0),
    (2, 11, 10, 2, 32, 5, 5, 1, 1, 2, 2, 1, 1, 0.5, True, 2.0),
    (1, 12, 13, 3, 24, 3, 3, 1, 1, 2, 2, 2, 2, 2.0, True, 1.0),
    (2, 9, 8, 2, 8, 5, 3, 2, 1, 0, 2, 1, 2, 0.5, False, 3.0),
    (1, 7, 10, 5, 5, 3, 5, 1, 2, 1, 0, 2, 1, 1.5, True, 2.0),
    (2, 6, 5, 4, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1.0, False, 8.0),  # offsets push most samples outside the image
]
KERNEL_IDS = [f'case{i}' for i in range(len(KERNEL_CASES))]


def case_args(case):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, rc, std = case
    return (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)


def run_core(core, case, dtype, device='cpu', im2col_step=64):
    """[output, grad_input, grad_offset_mask] of one core on the case, with a fixed random upstream gradient."""
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, rc, std = case
    torch.manual_seed(0)
    x, offset_mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, rc, std, torch.float64)
    x, offset_mask = x.to(device, dtype), offset_mask.to(device, dtype)
    args = case_args(case)
    grad_gen = torch.Generator().manual_seed(1)
    if core == 'cuda_bodies':  # the CUDA kernels' per-thread bodies, run on the CPU by the harness
        ext = load_extension()
        out = ext.cuda_bodies_forward_host(x, offset_mask, *args, im2col_step, int(rc))
        grad_out = torch.randn(out.shape, generator=grad_gen, dtype=torch.float64).to(dtype)
        return [out, *ext.cuda_bodies_backward_host(x, offset_mask, grad_out, *args, im2col_step, int(rc))]
    inputs = [t.clone().requires_grad_() for t in (x, offset_mask)]
    if core == 'reference':
        out = dcnv4_core_pytorch(*inputs, *args, rc)
    else:
        out = DCNv4Function.apply(*inputs, *args, im2col_step, rc)
    grad_out = torch.randn(out.shape, generator=grad_gen, dtype=torch.float64).to(device, dtype)
    out.backward(grad_out)
    return [out.detach()] + [t.grad for t in inputs]


def assert_results_close(got, expected, tol):
    for name, a, b in zip(('output', 'grad_input', 'grad_offset_mask'), got, expected):
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(a.cpu().double(), b.cpu().double(), rtol=tol, atol=tol,
                                   msg=lambda m, name=name: f'{name}: {m}')


def float64_kernel_on_rounded_inputs(case, dtype):
    """Expected half / bfloat16 results: the float64 CPU kernel (checked against the reference above) on the values of
    the low-precision inputs, rounded to that dtype.

    Not the grid_sample reference: rounded offsets often put samples exactly on pixel rows or columns, where the
    offset gradient jumps, and the reference's normalised coordinates land on either side of them by rounding.
    """
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, rc, std = case
    torch.manual_seed(0)
    x, offset_mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, rc, std, torch.float64)
    inputs = [t.to(dtype).double().requires_grad_() for t in (x, offset_mask)]
    out = DCNv4Function.apply(*inputs, *case_args(case), 64, rc)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(grad_out.to(dtype).double())
    return [out.detach().to(dtype)] + [t.grad.to(dtype) for t in inputs]


HALF_TOLERANCE = {torch.float16: 3e-2, torch.bfloat16: 2e-1}
