"""Check the compiled DCNv3 core against the pure-PyTorch core and time both (run after building).

    cd ops_dcnv3 && sh make.sh && python test.py

Prints forward and backward (input, offset, mask) differences in float64 and float32 on the CPU (and on CUDA when
a GPU is visible), and timings, for a softmaxed mask and for mask logits with the fused softmax (mask_softmax=True,
against torch.softmax then the PyTorch core); exits with status 1 on any mismatch.
"""
from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch, load_extension  # noqa: E402

# (N, H, W, group, group_channels, kernel, stride, pad, dilation, offset_scale, im2col_step)
CASES = [
    (2, 25, 31, 4, 16, 3, 1, 1, 1, 1.0, 2),
    (1, 17, 20, 8, 32, 3, 2, 1, 2, 2.0, 64),
    (3, 15, 14, 2, 24, 5, 1, 2, 1, 0.5, 2),
    (2, 12, 13, 1, 64, 3, 1, 0, 1, 1.0, 256),
]
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3}


def compare(case, dtype, device, fused: bool) -> bool:
    N, H, W, G, gc, k, s, p, d, osc, step = case
    H_out, W_out = (H + 2 * p - (d * (k - 1) + 1)) // s + 1, (W + 2 * p - (d * (k - 1) + 1)) // s + 1
    x = torch.randn(N, H, W, G * gc, dtype=dtype, device=device)
    offset = torch.randn(N, H_out, W_out, G * k * k * 2, dtype=dtype, device=device) * 2
    mask = torch.rand(N, H_out, W_out, G, k * k, dtype=dtype, device=device).softmax(-1).flatten(-2)
    if fused:  # logits instead: the kernels apply the softmax, the PyTorch core torch.softmax first
        mask = torch.randn(N, H_out, W_out, G * k * k, dtype=dtype, device=device) * 3
    args = (k, k, s, s, p, p, d, d, G, gc, osc)
    results = {}
    for core in ('pytorch', 'kernel'):
        inputs = [t.clone().requires_grad_() for t in (x, offset, mask)]
        start = time.perf_counter()
        if core == 'pytorch':
            out = dcnv3_core_pytorch(*inputs, *args, mask_softmax=fused)
        else:
            out = DCNv3Function.apply(*inputs, *args, step, fused)
        out.backward(torch.ones_like(out))
        if device == 'cuda':
            torch.cuda.synchronize()
        results[core] = ([out.detach()] + [t.grad for t in inputs], time.perf_counter() - start)
    ok = True
    diffs = []
    for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), results['kernel'][0],
                          results['pytorch'][0]):
        diff = (a - b).abs().max().item()
        limit = TOLERANCE[dtype] * max(1.0, b.abs().max().item())
        ok &= diff <= limit
        diffs.append(f'{name} {diff:.1e}')
    label = 'fused softmax ' if fused else ''
    print(f'* {"ok  " if ok else "FAIL"} {device} {str(dtype):13} {label}N={N} {H}x{W} G={G} gc={gc} k={k} s={s} p={p} '
          f'd={d} os={osc}: max |diff| ' + ', '.join(diffs) +
          f'; fwd+bwd kernel {results["kernel"][1] * 1e3:.1f} ms, pytorch {results["pytorch"][1] * 1e3:.1f} ms')
    return ok


def main() -> int:
    extension = load_extension()
    if extension is None:
        print('ops_dcnv3._C is not built: run `sh make.sh` (or `make setup` at the repository root)')
        return 1
    print(f'ops_dcnv3._C: CPU path {extension.cpu_isa()}, built with CUDA: {extension.with_cuda}')
    torch.manual_seed(0)
    devices = ['cpu'] + (['cuda'] if extension.with_cuda and torch.cuda.is_available() else [])
    ok = all([compare(case, dtype, device, fused) for device in devices for dtype in (torch.float64, torch.float32)
              for fused in (False, True) for case in CASES])
    print('all checks passed' if ok else 'MISMATCH between the compiled kernel and the PyTorch core')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
