"""Shared DCNv3 test cases: the geometry sweep, random inputs, and forward+backward of any core."""
from __future__ import annotations

from typing import Callable

import torch

from ops_dcnv3.functions import load_extension


def cuda_kernel_skip_reason() -> str | None:
    """Why the CUDA DCNv3 kernel cannot run here (the skip reason of every `cuda` test), or None."""
    if not torch.cuda.is_available():
        return 'no CUDA device (torch.cuda.is_available() is False)'
    extension = load_extension()
    if extension is None:
        return 'ops_dcnv3._C is not built (make setup, or tools/gpu_check.sh on a GPU machine)'
    if not extension.with_cuda:
        return 'ops_dcnv3._C was built without CUDA: core_op=\'DCNv3\' would run the PyTorch core on CUDA tensors'
    return None


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_std=2.0, dtype=torch.float64,
              device='cpu'):
    """Random (input, offset, mask) for one geometry; mask uniform in [0, 1) (not softmaxed: any weights work)."""
    Ho, Wo = output_size(H, kh, sh, ph, dh), output_size(W, kw, sw, pw, dw)
    K = kh * kw
    x = torch.randn(N, H, W, group * gc, dtype=dtype)
    offset = torch.randn(N, Ho, Wo, group * K * 2, dtype=dtype) * offset_std
    mask = torch.rand(N, Ho, Wo, group * K, dtype=dtype)
    return x.to(device), offset.to(device), mask.to(device)


# Kernel sweep: kernel 3/5, stride 1/2, dilation 1/2, padding 0..2 (pad_h != pad_w too), groups 1..8, group
# channels 5..64 (the CPU kernel's 8/16/32 specialisations, the generic path, and sizes no vector pack divides),
# offset_scale, odd and non-square sizes (H_out != W_out everywhere but one case), large offsets.
# (N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale, offset_std)
KERNEL_CASES = [
    (2, 9, 11, 4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0),
    (1, 13, 7, 1, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 1.0),
    (3, 8, 9, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1.0, 2.0),
    (2, 11, 10, 2, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1.0, 2.0),
    (1, 12, 13, 3, 24, 3, 3, 1, 1, 2, 2, 2, 2, 2.0, 1.0),
    (2, 9, 8, 2, 8, 5, 3, 2, 1, 0, 2, 1, 2, 0.5, 3.0),
    (1, 7, 10, 5, 16, 3, 5, 1, 2, 1, 0, 2, 1, 1.5, 2.0),
    (2, 6, 5, 4, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1.0, 8.0),  # offsets push most samples outside the image
    (5, 5, 6, 2, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0),  # batch 5 > im2col_step 2 (not a multiple of it)
]


def case_inputs(case, dtype=torch.float64, device='cpu'):
    """(x, offset, mask, args) of a KERNEL_CASES entry; args are the 11 geometry arguments after the tensors."""
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, std = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, std, dtype, device)
    return x, offset, mask, (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)


# Cases with offset_scale 1, where a sampling location's fractional part is the offset's (the grid is integral).
UNIT_SCALE_CASES = [i for i, case in enumerate(KERNEL_CASES) if case[13] == 1.0]


def offsets_off_the_grid(offset: torch.Tensor) -> torch.Tensor:
    """Offsets whose fractional parts lie in [7/64, 57/64]: exact in float16 and bfloat16 for |offset| < 4.

    With offset_scale 1 no sampling location is then within 0.1 px of an integer, where the bilinear offset
    gradient jumps and a reference computing the location differently (grid_sample normalises it) may land on the
    other side. Half-precision inputs have so few fractional bits that plain random offsets hit integers often.
    """
    fraction = torch.randint(7, 58, offset.shape, generator=torch.Generator().manual_seed(2)) / 64
    return (offset.clamp(-3.9, 3.9).floor() + fraction.to(offset.dtype)).to(offset.device)


def forward_backward(core: Callable[..., torch.Tensor], x, offset, mask, args, grad_seed: int = 1,
                     grad_rounded_to: torch.dtype | None = None, keep_layout: bool = False):
    """[output, grad_input, grad_offset, grad_mask] of `core(x, offset, mask, *args)` for a fixed random grad_out.

    grad_out is drawn in float64 (the same values whatever the output dtype), rounded to `grad_rounded_to` if
    given (a float64 reference of a half-precision run sees the half run's grad_out), then cast to the output dtype.
    The inputs are cloned (fresh, aligned storage) unless `keep_layout`: then the core gets the very tensors given,
    with their strides and storage offsets (a misaligned view stays misaligned).
    """
    inputs = [(t.detach() if keep_layout else t.detach().clone()).requires_grad_() for t in (x, offset, mask)]
    out = core(*inputs, *args)
    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(grad_seed))
    if grad_rounded_to is not None:
        grad_out = grad_out.to(grad_rounded_to)
    out.backward(grad_out.to(device=out.device, dtype=out.dtype))
    return [out.detach()] + [t.grad for t in inputs]


RESULT_NAMES = ('output', 'grad_input', 'grad_offset', 'grad_mask')


def assert_results_close(actual, expected, rtol: float, atol: float, what: str) -> None:
    """Compare [output, grad_input, grad_offset, grad_mask] lists; the message names `what` and the tensor."""
    for name, a, b in zip(RESULT_NAMES, actual, expected):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f'{what}, {name}: {m}')


class HarnessCore(torch.autograd.Function):
    """The harness as an autograd function: forward and backward bodies, `pack` channels per forward thread;
    with `mask_softmax` the mask holds logits (the fused softmax)."""

    @staticmethod
    def forward(ctx, x, offset, mask, kh, kw, sh, sw, ph, pw, dh, dw, group, gc, offset_scale, pack,
                mask_softmax=False):
        ctx.args = (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, offset_scale)
        ctx.pack, ctx.mask_softmax = pack, mask_softmax
        ctx.save_for_backward(x, offset, mask)
        return load_extension().cuda_bodies_forward_host(x, offset, mask, *ctx.args, 64, pack, mask_softmax)

    @staticmethod
    def backward(ctx, grad_output):
        x, offset, mask = ctx.saved_tensors
        grads = load_extension().cuda_bodies_backward_host(x, offset, mask, *ctx.args, grad_output.contiguous(), 64,
                                                           ctx.pack, ctx.mask_softmax)
        return (*grads,) + (None,) * 13


def harness(pack: int, mask_softmax: bool = False):
    return lambda x, offset, mask, *args: HarnessCore.apply(x, offset, mask, *args, pack, mask_softmax)
