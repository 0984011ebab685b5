"""The mask softmax fused into the DCNv3 CPU kernel against softmax-then-kernel, measured in the same run.

Per stage of InternImage-T at 800x1333 (batch 1, float32), median of interleaved repeats:
  unfused   torch.softmax over each group's 9 mask logits, then DCNv3Function on the softmaxed mask (what the
            module ran before the fusion, and still runs on every route but the compiled kernel)
  fused     DCNv3Function(..., mask_softmax=True) on the logits
  kernel    DCNv3Function on an already-softmaxed mask: the kernel alone, for scale
Forward, and forward+backward (gradients of input, offset and logits). Ratios are unfused / fused (> 1: the fusion
pays). `--backbone` adds the whole InternImage-T backbone forward (no_grad, eval) at the same size with the DCNv3
modules fused against the same modules forced to the unfused path.

usage: python tools/benchmarks/bench_mask_softmax.py [--repeats 5] [--threads 2] [--stages 1 2 3 4] [--backbone]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ops_dcnv3.functions import DCNv3Function, extension_available, softmax_over_points  # noqa: E402

# (height, width, channels, groups) of InternImage-T's stages for an 800x1333 input.
STAGES = {1: (200, 336, 64, 4), 2: (100, 168, 128, 8), 3: (50, 84, 256, 16), 4: (25, 42, 512, 32)}
POINTS = 9


def stage_inputs(stage: int, requires_grad: bool):
    height, width, channels, groups = STAGES[stage]
    generator = torch.Generator().manual_seed(stage)
    x = torch.randn(1, height, width, channels, generator=generator)
    offset = torch.randn(1, height, width, groups * POINTS * 2, generator=generator) * 2
    logits = torch.randn(1, height, width, groups * POINTS, generator=generator) * 2
    args = (3, 3, 1, 1, 1, 1, 1, 1, groups, channels // groups, 1.0)
    return [t.requires_grad_(requires_grad) for t in (x, offset, logits)], args


def variants(args, logits: torch.Tensor) -> dict[str, Callable]:
    groups = args[8]
    # the kernel-alone variant's mask, softmaxed once outside the timing
    softmaxed = softmax_over_points(logits.detach(), groups).requires_grad_(logits.requires_grad)
    return {
        'unfused': lambda x, offset, logits: DCNv3Function.apply(x, offset, softmax_over_points(logits, groups),
                                                                 *args, 256),
        'fused': lambda x, offset, logits: DCNv3Function.apply(x, offset, logits, *args, 256, True),
        'kernel': lambda x, offset, logits: DCNv3Function.apply(x, offset, softmaxed, *args, 256),
    }


def interleaved_medians(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for call in calls.values():  # warm-up
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_stage(stage: int, backward: bool, repeats: int) -> dict[str, float]:
    inputs, args = stage_inputs(stage, backward)

    def call(fn):
        def run():
            for t in inputs:
                t.grad = None
            with torch.set_grad_enabled(backward):
                out = fn(*inputs)
                if backward:
                    out.backward(torch.ones_like(out))
        return run

    return interleaved_medians({name: call(fn) for name, fn in variants(args, inputs[2]).items()}, repeats)


def bench_backbone(repeats: int) -> dict[str, float]:
    from mmdet_custom.models.backbones.intern_image import InternImage
    from ops_dcnv3.modules.dcnv3 import DCNv3, DCNv3_pytorch
    model = InternImage.from_variant('T', core_op='DCNv3', out_indices=(0, 1, 2, 3)).eval()
    image = torch.randn(1, 3, 800, 1344)
    fused_sample = DCNv3._sample

    def run(sample):
        def forward():
            DCNv3._sample = sample
            try:
                with torch.no_grad():
                    model(image)
            finally:
                DCNv3._sample = fused_sample
        return forward

    return interleaved_medians({'unfused': run(DCNv3_pytorch._sample), 'fused': run(fused_sample)}, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--stages', type=int, nargs='+', default=[1, 2, 3, 4], choices=sorted(STAGES))
    parser.add_argument('--backbone', action='store_true', help='also time the InternImage-T backbone forward')
    args = parser.parse_args()
    if not extension_available():
        print('bench_mask_softmax: ops_dcnv3._C is not built (make setup): nothing to compare')
        return 1
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads, float32, batch 1, median of {args.repeats}')
    print(f'{"shape":>22} {"pass":>9} {"unfused ms":>11} {"fused ms":>9} {"kernel ms":>10} {"unfused/fused":>14}')
    for stage in args.stages:
        height, width, channels, groups = STAGES[stage]
        for backward in (False, True):
            t = bench_stage(stage, backward, args.repeats)
            print(f'{f"stage {stage} {height}x{width}x{channels}":>22} {"fwd+bwd" if backward else "fwd":>9} '
                  f'{t["unfused"] * 1e3:11.2f} {t["fused"] * 1e3:9.2f} {t["kernel"] * 1e3:10.2f} '
                  f'{t["unfused"] / t["fused"]:14.2f}')
    if args.backbone:
        t = bench_backbone(max(3, args.repeats // 2))
        print(f'InternImage-T backbone forward 800x1344: unfused {t["unfused"]:.3f} s, fused {t["fused"]:.3f} s, '
              f'unfused/fused {t["unfused"] / t["fused"]:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
