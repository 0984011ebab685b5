"""A few small DCNv3 and DCNv4 CUDA launches (forward and backward; float32, float16, bfloat16; the fused mask
softmax; borders, stride, dilation; a misaligned view), for ``compute-sanitizer --tool memcheck`` to watch:

    compute-sanitizer --tool memcheck --error-exitcode 1 python tools/kernel_check/cuda_memcheck.py

Exits 0 when every launch ran; tools/gpu_check.sh runs it where compute-sanitizer exists.
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ops_dcnv3.functions import DCNv3Function  # noqa: E402
from ops_dcnv4.functions import DCNv4Function, offset_mask_channels  # noqa: E402

# (N, H, W, group, group_channels, kernel, stride, pad, dilation)
GEOMETRIES = [(1, 1, 1, 1, 8, 3, 1, 1, 1), (2, 5, 7, 2, 16, 3, 1, 1, 1), (1, 9, 6, 3, 4, 3, 2, 0, 1),
              (2, 8, 8, 1, 32, 5, 1, 4, 2)]


def misaligned(t: torch.Tensor) -> torch.Tensor:
    """The same values in a contiguous view one element into its storage (not 16-byte aligned)."""
    return torch.empty(t.numel() + 1, device=t.device, dtype=t.dtype)[1:].view(t.shape).copy_(t)


def run_dcnv3(geometry, dtype: torch.dtype, shift: bool) -> None:
    n, h, w, g, gc, k, s, p, d = geometry
    h_out, w_out = (h + 2 * p - (d * (k - 1) + 1)) // s + 1, (w + 2 * p - (d * (k - 1) + 1)) // s + 1
    x = torch.randn(n, h, w, g * gc, device='cuda', dtype=dtype)
    offset = torch.randn(n, h_out, w_out, g * k * k * 2, device='cuda', dtype=dtype) * 3
    mask = torch.randn(n, h_out, w_out, g * k * k, device='cuda', dtype=dtype)
    if shift:
        x, offset, mask = misaligned(x), misaligned(offset), misaligned(mask)
    for softmax in (False, True):
        leaves = [t.detach().requires_grad_() for t in (x, offset, mask)]
        out = DCNv3Function.apply(*leaves, k, k, s, s, p, p, d, d, g, gc, 1.0, 64, softmax)
        out.float().square().sum().backward()


def run_dcnv4(geometry, dtype: torch.dtype, shift: bool) -> None:
    n, h, w, g, gc, k, s, p, d = geometry
    h_out, w_out = (h + 2 * p - (d * (k - 1) + 1)) // s + 1, (w + 2 * p - (d * (k - 1) + 1)) // s + 1
    for remove_center in (False, True):
        x = torch.randn(n, h, w, g * gc, device='cuda', dtype=dtype)
        offset_mask = torch.randn(n, h_out, w_out, offset_mask_channels(g, k, k, remove_center), device='cuda',
                                  dtype=dtype) * 3
        if shift:
            x, offset_mask = misaligned(x), misaligned(offset_mask)
        leaves = [t.detach().requires_grad_() for t in (x, offset_mask)]
        out = DCNv4Function.apply(*leaves, k, k, s, s, p, p, d, d, g, gc, 1.0, 64, remove_center)
        out.float().square().sum().backward()


def main() -> int:
    if not torch.cuda.is_available():
        print('cuda_memcheck: no CUDA device visible', file=sys.stderr)
        return 1
    torch.manual_seed(0)
    launches = 0
    for geometry in GEOMETRIES:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            for shift in (False, True):
                run_dcnv3(geometry, dtype, shift)
                run_dcnv4(geometry, dtype, shift)
                launches += 2
    torch.cuda.synchronize()
    print(f'cuda_memcheck: {launches} forward+backward runs of DCNv3 and DCNv4 done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
