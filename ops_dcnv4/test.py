"""Check the compiled DCNv4 core against the pure-PyTorch core and time both (run after building).

    cd ops_dcnv4 && sh make.sh && python test.py

Prints forward and backward (input, offset_mask) differences in float64 and float32 of the CPU kernel, of the CUDA
kernels' per-thread bodies run on the CPU (the harness), and of the CUDA kernel when a GPU is visible, with
timings; exits with status 1 on any mismatch.
"""
from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ops_dcnv4.functions import (  # noqa: E402
    DCNv4Function,
    dcnv4_core_pytorch,
    load_extension,
    offset_mask_channels,
)

# (N, H, W, group, group_channels, kernel, stride, pad, dilation, offset_scale, remove_center)
CASES = [
    (2, 25, 31, 4, 16, 3, 1, 1, 1, 1.0, False),
    (1, 17, 20, 8, 32, 3, 2, 1, 2, 2.0, True),
    (3, 15, 14, 2, 24, 5, 1, 2, 1, 0.5, True),
    (2, 12, 13, 1, 64, 3, 1, 0, 1, 1.0, False),
]
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3}


def run(core: str, x: torch.Tensor, offset_mask: torch.Tensor, grad_out: torch.Tensor, args: tuple, rc: bool):
    """([output, grad_input, grad_offset_mask], seconds) of one core."""
    start = time.perf_counter()
    if core == 'cuda bodies':
        ext = load_extension()
        out = ext.cuda_bodies_forward_host(x, offset_mask, *args, 64, int(rc))
        results = [out, *ext.cuda_bodies_backward_host(x, offset_mask, grad_out, *args, 64, int(rc))]
    else:
        inputs = [t.clone().requires_grad_() for t in (x, offset_mask)]
        if core == 'pytorch':
            out = dcnv4_core_pytorch(*inputs, *args, rc)
        else:
            out = DCNv4Function.apply(*inputs, *args, 64, rc)
        out.backward(grad_out)
        results = [out.detach()] + [t.grad for t in inputs]
    if x.is_cuda:
        torch.cuda.synchronize()
    return results, time.perf_counter() - start


def compare(case, dtype, device, core) -> bool:
    N, H, W, G, gc, k, s, p, d, osc, rc = case
    H_out, W_out = (H + 2 * p - (d * (k - 1) + 1)) // s + 1, (W + 2 * p - (d * (k - 1) + 1)) // s + 1
    x = torch.randn(N, H, W, G * gc, dtype=dtype, device=device)
    offset_mask = torch.randn(N, H_out, W_out, offset_mask_channels(G, k, k, rc), dtype=dtype, device=device) * 2
    grad_out = torch.randn(N, H_out, W_out, G * gc, dtype=dtype, device=device)
    args = (k, k, s, s, p, p, d, d, G, gc, osc)
    (got, seconds), (expected, reference_seconds) = (run(core, x, offset_mask, grad_out, args, rc),
                                                     run('pytorch', x, offset_mask, grad_out, args, rc))
    ok, diffs = True, []
    for name, a, b in zip(('output', 'grad_input', 'grad_offset_mask'), got, expected):
        diff = (a - b).abs().max().item()
        ok &= diff <= TOLERANCE[dtype] * max(1.0, b.abs().max().item())
        diffs.append(f'{name} {diff:.1e}')
    print(f'* {"ok  " if ok else "FAIL"} {core:11} {device} {str(dtype):13} N={N} {H}x{W} G={G} gc={gc} k={k} s={s} '
          f'p={p} d={d} os={osc} rc={int(rc)}: max |diff| ' + ', '.join(diffs) +
          f'; fwd+bwd {seconds * 1e3:.1f} ms, pytorch {reference_seconds * 1e3:.1f} ms')
    return ok


def main() -> int:
    extension = load_extension()
    if extension is None:
        print('ops_dcnv4._C is not built: run `sh make.sh` (or `make setup` at the repository root)')
        return 1
    print(f'ops_dcnv4._C: CPU path {extension.cpu_isa()}, built with CUDA: {extension.with_cuda}')
    torch.manual_seed(0)
    runs = [('kernel', 'cpu'), ('cuda bodies', 'cpu')]
    if extension.with_cuda and torch.cuda.is_available():
        runs.append(('kernel', 'cuda'))
    ok = all([compare(case, dtype, device, core) for core, device in runs
              for dtype in (torch.float64, torch.float32) for case in CASES])
    print('all checks passed' if ok else 'MISMATCH between the compiled kernel and the PyTorch core')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
