"""DCNv4 against DCNv3 on the CPU: both compiled kernels on the same shapes, measured in the same run.

Shapes: InternImage-T's four stages for an 800x1344 image (strides 4..32; kernel 3, stride 1, pad 1, dilation 1,
group_channels 16, groups 4/8/16/32), float32. Both kernels get the same input, offsets and mask values (DCNv4 in its
packed offset_mask, DCNv3 as separate offset and mask tensors). Printed per shape: the median time of forward and of
forward+backward of each kernel (the kernels alternate, so load changes hit both) and the ratio DCNv3 / DCNv4 (> 1:
DCNv4 is faster). The "+softmax" ratio adds the mask softmax (forward, and backward in f+b) that DCNv3's module runs
on every call and DCNv4 does not have.

usage: python tools/benchmarks/bench_dcnv4.py [--repeats 5] [--threads 2] [--batches 1 2] [--stages 1 2 3 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import ops_dcnv3.functions as dcnv3  # noqa: E402
import ops_dcnv4.functions as dcnv4  # noqa: E402

# (height, width, channels, groups) of InternImage-T's stages for an 800x1344 input.
STAGES = {1: (200, 336, 64, 4), 2: (100, 168, 128, 8), 3: (50, 84, 256, 16), 4: (25, 42, 512, 32)}
KERNEL, POINTS = 3, 9
GEOMETRY = (KERNEL, KERNEL, 1, 1, 1, 1, 1, 1)  # kernel, stride, pad, dilation (h, w each)


def make_inputs(batch: int, stage: int):
    height, width, channels, groups = STAGES[stage]
    generator = torch.Generator().manual_seed(stage * 10 + batch)
    x = torch.randn(batch, height, width, channels, generator=generator)
    offset = torch.randn(batch, height, width, groups * POINTS * 2, generator=generator) * 2
    mask_logits = torch.randn(batch, height, width, groups * POINTS, generator=generator)
    mask = mask_logits.view(batch, height, width, groups, POINTS).softmax(-1).flatten(-2)
    return {'x': x, 'offset': offset, 'mask_logits': mask_logits, 'mask': mask,
            'offset_mask': dcnv4.pack_offset_mask(offset, mask, groups), 'groups': groups}


def run(core: str, inputs: dict, backward: bool) -> None:
    groups = inputs['groups']
    args = (*GEOMETRY, groups, inputs['x'].shape[-1] // groups, 1.0)
    with torch.set_grad_enabled(backward):
        x = inputs['x'].requires_grad_(backward)
        if core == 'dcnv4':
            offset_mask = inputs['offset_mask'].requires_grad_(backward)
            out = dcnv4.DCNv4Function.apply(x, offset_mask, *args, 256, False)
        else:
            offset = inputs['offset'].requires_grad_(backward)
            if core == 'dcnv3+softmax':
                logits = inputs['mask_logits'].requires_grad_(backward)
                shape = logits.shape
                mask = logits.view(*shape[:3], groups, POINTS).softmax(-1).view(shape)
            else:
                mask = inputs['mask'].requires_grad_(backward)
            out = dcnv3.DCNv3Function.apply(x, offset, mask, *args, 256)
        if backward:
            out.backward(torch.ones_like(out))


def time_cores(batch: int, stage: int, backward: bool, repeats: int) -> dict[str, float]:
    """Median seconds per call of each core; the cores alternate so load changes hit all of them."""
    inputs = make_inputs(batch, stage)
    times = {'dcnv3': [], 'dcnv3+softmax': [], 'dcnv4': []}
    for core in times:  # warm-up
        run(core, inputs, backward)
    for _ in range(repeats):
        for core in times:
            for key in ('x', 'offset', 'mask', 'mask_logits', 'offset_mask'):
                inputs[key].grad = None
            start = time.perf_counter()
            run(core, inputs, backward)
            times[core].append(time.perf_counter() - start)
    return {core: statistics.median(values) for core, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--stages', type=int, nargs='+', default=[1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    missing = [name for name, ops in (('ops_dcnv3', dcnv3), ('ops_dcnv4', dcnv4)) if not ops.extension_available()]
    if missing:
        print(f'{" and ".join(m + "._C" for m in missing)} not built: run `make setup`', file=sys.stderr)
        return 1
    print(f'DCNv4 vs DCNv3 CPU kernel (DCNv4 {dcnv4.load_extension().cpu_isa()}, DCNv3 '
          f'{dcnv3.load_extension().cpu_isa()}), float32, {args.threads} threads, median of {args.repeats}; '
          'ratio = DCNv3 time / DCNv4 time')
    print(f'{"stage":>5} {"batch":>5} | {"fwd v3 ms":>9} {"fwd v4 ms":>9} {"fwd x":>6} {"+softmax":>8} | '
          f'{"f+b v3 ms":>9} {"f+b v4 ms":>9} {"f+b x":>6} {"+softmax":>8}')
    for stage in args.stages:
        for batch in args.batches:
            line = f'{stage:>5} {batch:>5}'
            for backward in (False, True):
                t = time_cores(batch, stage, backward, args.repeats)
                line += (f' | {t["dcnv3"] * 1e3:>9.1f} {t["dcnv4"] * 1e3:>9.1f} {t["dcnv3"] / t["dcnv4"]:>6.2f} '
                         f'{t["dcnv3+softmax"] / t["dcnv4"]:>8.2f}')
            print(line, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
