"""CPU RoIAlign: ops_roialign's multi-threaded kernel against mmcv's single-threaded one, in the same run.

Shapes of Mask R-CNN inference at 800x1344 (FPN, 256 channels): the box head's 1000 proposals at 7x7 on the stride-8
level and the mask head's 100 detections at 14x14 on the stride-4 level (mmdet spreads RoIs over the levels by
size; one level per case keeps the comparison simple), forward and backward (avg pooling, sampling_ratio 0, aligned).
Median of interleaved repeats; ratio = mmcv time / ops_roialign time (> 1: ops_roialign is faster). The load
average is printed: the machine may be shared.

usage: python tools/benchmarks/bench_roi_align.py [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

# name: (number of RoIs, output size, feature stride, feature map (H, W) of an 800x1344 input)
CASES = {
    'bbox 1000 RoIs 7x7': (1000, 7, 8, (100, 168)),
    'mask 100 RoIs 14x14': (100, 14, 4, (200, 336)),
}
CHANNELS = 256


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    import torch
    from mmcv.ops import roi_align

    import mmcv_custom  # noqa: F401  (installs the hook where ops_roialign is built)
    from ops_roialign.mmcv_route import patch_mmcv_roi_align_cpu, roi_align_kernel_installed

    if not roi_align_kernel_installed():
        print('ops_roialign._C is not built (make setup builds it): nothing to compare')
        return 1
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f'CPU RoIAlign, {CHANNELS} channels, {args.threads} threads, median of {args.repeats} interleaved repeats; '
          f'load average {", ".join(f"{v:.2f}" for v in os.getloadavg())}')
    for name, (num_rois, size, stride, (height, width)) in CASES.items():
        features = torch.randn(1, CHANNELS, height, width, generator=generator, requires_grad=True)
        top_left = torch.rand(num_rois, 2, generator=generator) * torch.tensor([width, height]) * stride * 0.8
        box_size = torch.rand(num_rois, 2, generator=generator) * 200 + 16
        rois = torch.cat([torch.zeros(num_rois, 1), top_left, top_left + box_size], 1)
        grad = torch.randn(num_rois, CHANNELS, size, size, generator=generator)

        def run(use_kernel: bool, phase: str) -> float:
            patch_mmcv_roi_align_cpu(enable=use_kernel)
            start = time.perf_counter()
            output = roi_align(features, rois, (size, size), 1.0 / stride, 0, 'avg', True)
            forward = time.perf_counter() - start
            if phase == 'forward':
                return forward
            start = time.perf_counter()
            output.backward(grad)
            features.grad = None
            return time.perf_counter() - start

        for phase in ('forward', 'backward'):
            times = {'mmcv': [], 'ops_roialign': []}
            run(True, phase), run(False, phase)   # warm-up
            for _ in range(args.repeats):
                times['mmcv'].append(run(False, phase))
                times['ops_roialign'].append(run(True, phase))
            medians = {key: statistics.median(values) for key, values in times.items()}
            print(f'  {name:20s} {phase:8s} mmcv {medians["mmcv"] * 1e3:8.1f} ms   ops_roialign '
                  f'{medians["ops_roialign"] * 1e3:8.1f} ms   ratio {medians["mmcv"] / medians["ops_roialign"]:.2f}x')
    patch_mmcv_roi_align_cpu(enable=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
