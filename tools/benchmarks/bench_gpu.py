"""DCNv3 and InternImage-T on a GPU, each against a baseline measured in the same run (what tools/gpu_check.sh runs).

Figures (one summary line each, also written as JSON lines to --results):
  dcnv3     the compiled CUDA kernel vs the pure-PyTorch core (dcnv3_core_pytorch) on InternImage-T's four stage
            shapes at 800x1344 (200x336x64 G4, 100x168x128 G8, 50x84x256 G16, 25x42x512 G32; kernel 3, 16 channels
            per group), batch 2, forward and forward+backward, float32/float16/bfloat16. Ratio = PyTorch / kernel.
  backbone  InternImage-T forward+backward (train mode, batch 2, 800x1344) with the CUDA kernel, and with the PyTorch
            core, vs timm's ConvNeXt-T (features_only), float32 and bfloat16 autocast. Ratio = model / ConvNeXt-T.
Times: median of CUDA-event timings of interleaved repeats after warm-up. Memory: peak allocated by the measured call
above what was allocated before it (torch.cuda.max_memory_allocated), in MiB.

usage: python tools/benchmarks/bench_gpu.py [--results FILE] [--repeats 10] [--smoke]
  --smoke  tiny shapes, on the CPU when no GPU is visible: checks this script, measures nothing meaningful.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from typing import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch, load_extension  # noqa: E402

# (height, width, channels, groups) of InternImage-T's stages for an 800x1344 input (strides 4, 8, 16, 32).
STAGES = {1: (200, 336, 64, 4), 2: (100, 168, 128, 8), 3: (50, 84, 256, 16), 4: (25, 42, 512, 32)}
SMOKE_STAGES = {1: (12, 20, 64, 4), 4: (4, 6, 512, 32)}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
KERNEL = 3
# Targets the kernel is built for (issue 11): speed-up over the PyTorch core.
TARGETS = {'fwd': 3.0, 'fwd+bwd': 2.0}


class Timer:
    """Wall time of a callable: CUDA events on a GPU, perf_counter on the CPU (smoke runs)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.device.type != 'cuda':
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def peak_mib(device: torch.device, fn: Callable[[], None]) -> float | None:
    """Peak memory the call allocated above what was allocated before it (None off the GPU)."""
    if device.type != 'cuda':
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20


def compare(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, dict]:
    """Median time and peak memory of each callable; they take turns so a clock or load change hits all alike."""
    timer = Timer(device)
    for fn in fns.values():  # warm-up (allocator, cuDNN/cuBLAS heuristics, lazy module init)
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timer(fn))
    return {name: {'ms': statistics.median(values) * 1e3, 'peak_mib': peak_mib(device, fns[name])}
            for name, values in times.items()}


def dcnv3_inputs(stage_shape, batch: int, dtype: torch.dtype, device: torch.device, requires_grad: bool):
    height, width, channels, groups = stage_shape
    points = KERNEL * KERNEL
    generator = torch.Generator().manual_seed(height)
    x = torch.randn(batch, height, width, channels, generator=generator)
    offset = torch.randn(batch, height, width, groups * points * 2, generator=generator) * 2
    mask = torch.randn(batch, height, width, groups, points, generator=generator).softmax(-1).flatten(-2)
    args = (KERNEL, KERNEL, 1, 1, 1, 1, 1, 1, groups, channels // groups, 1.0)
    tensors = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (x, offset, mask)]
    return tensors, args


def dcnv3_call(core: str, tensors, args, backward: bool) -> Callable[[], None]:
    grad_out = None

    def run() -> None:
        nonlocal grad_out
        for t in tensors:
            t.grad = None
        with torch.set_grad_enabled(backward):
            if core == 'kernel':
                out = DCNv3Function.apply(*tensors, *args, 256)
            else:
                out = dcnv3_core_pytorch(*tensors, *args)
            if backward:
                if grad_out is None:
                    grad_out = torch.ones_like(out)
                out.backward(grad_out)
    return run


def bench_dcnv3(stages, batch: int, device: torch.device, repeats: int, emit) -> None:
    for stage, shape in stages.items():
        for dtype_name, dtype in DTYPES.items():
            for mode in ('fwd', 'fwd+bwd'):
                backward = mode == 'fwd+bwd'
                tensors, args = dcnv3_inputs(shape, batch, dtype, device, backward)
                result = compare({core: dcnv3_call(core, tensors, args, backward) for core in ('kernel', 'pytorch')},
                                 device, repeats)
                ratio = result['pytorch']['ms'] / result['kernel']['ms']
                height, width, channels, groups = shape
                target = TARGETS[mode]
                emit(dict(figure='dcnv3', stage=stage, shape=f'{batch}x{height}x{width}x{channels}', groups=groups,
                          dtype=dtype_name, mode=mode, kernel_ms=result['kernel']['ms'],
                          pytorch_ms=result['pytorch']['ms'], speedup=ratio, target=target,
                          kernel_peak_mib=result['kernel']['peak_mib'],
                          pytorch_peak_mib=result['pytorch']['peak_mib']),
                     f'dcnv3 stage{stage} {batch}x{height}x{width}x{channels} G{groups} {dtype_name:<4} {mode:<7}: '
                     f'kernel {result["kernel"]["ms"]:8.3f} ms, pytorch {result["pytorch"]["ms"]:8.3f} ms, '
                     f'speed-up {ratio:5.2f}x ({verdict(ratio, target, device)}); '
                     f'peak MiB kernel {_mib(result["kernel"]["peak_mib"])} / pytorch '
                     f'{_mib(result["pytorch"]["peak_mib"])}')
                del tensors


def verdict(ratio: float, target: float, device: torch.device) -> str:
    if device.type != 'cuda':
        return 'CPU smoke run: not a GPU figure'
    return f'target >= {target:.0f}x: {"met" if ratio >= target else "MISSED"}'


def _mib(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.0f}'


def build_backbone(name: str, device: torch.device) -> torch.nn.Module:
    if name == 'convnext_t':
        import timm
        model = timm.create_model('convnext_tiny', pretrained=False, features_only=True)
    else:
        from mmdet_custom.models.backbones.intern_image import InternImage
        core_op = {'internimage_t': 'DCNv3', 'internimage_t_pytorch': 'DCNv3_pytorch'}[name]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = InternImage.from_variant('T', core_op=core_op)
    return model.to(device).train()


def backbone_call(model: torch.nn.Module, image: torch.Tensor, autocast_dtype: torch.dtype | None):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(image.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outs = model(image)
            loss = sum(o.float().mean() for o in outs)
        loss.backward()
    return run


def bench_backbones(size, batch: int, device: torch.device, repeats: int, emit) -> None:
    names = ('internimage_t', 'internimage_t_pytorch', 'convnext_t')
    models = {name: build_backbone(name, device) for name in names}
    image = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    precisions = {'fp32': None, 'bf16-autocast': torch.bfloat16}
    for precision, autocast_dtype in precisions.items():
        if autocast_dtype is not None and device.type != 'cuda':
            continue
        result = compare({name: backbone_call(model, image, autocast_dtype) for name, model in models.items()},
                         device, repeats)
        base = result['convnext_t']
        for name in names[:2]:
            ratio = result[name]['ms'] / base['ms']
            emit(dict(figure='backbone', model=name, baseline='convnext_t', precision=precision,
                      input=f'{batch}x3x{size[0]}x{size[1]}', mode='fwd+bwd', ms=result[name]['ms'],
                      baseline_ms=base['ms'], time_ratio=ratio, peak_mib=result[name]['peak_mib'],
                      baseline_peak_mib=base['peak_mib']),
                 f'backbone {name:<21} fwd+bwd {precision:<13} {batch}x3x{size[0]}x{size[1]}: '
                 f'{result[name]["ms"]:8.1f} ms vs convnext_t {base["ms"]:8.1f} ms = {ratio:5.2f}x ConvNeXt-T time; '
                 f'peak MiB {_mib(result[name]["peak_mib"])} vs {_mib(base["peak_mib"])}')
        kernel_vs_core = result['internimage_t_pytorch']['ms'] / result['internimage_t']['ms']
        emit(dict(figure='backbone_core', precision=precision, speedup=kernel_vs_core),
             f'backbone internimage_t fwd+bwd {precision}: {device.type.upper()} kernel vs PyTorch core end to end: '
             f'{kernel_vs_core:5.2f}x faster')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--results', help='append the figures as JSON lines to this file')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--skip', nargs='*', default=[], choices=['dcnv3', 'backbone'])
    parser.add_argument('--smoke', action='store_true', help='tiny shapes; runs on the CPU when no GPU is visible')
    args = parser.parse_args()
    extension = load_extension()
    cuda = torch.cuda.is_available()
    if not args.smoke:
        if not cuda:  # not an error: `make bench` runs every benchmark on every machine
            print('bench_gpu: skipped, no CUDA device visible (--smoke checks the script on the CPU)')
            return 0
        if extension is None or not extension.with_cuda:
            print('bench_gpu: ops_dcnv3._C with CUDA is not built (tools/gpu_check.sh builds it)', file=sys.stderr)
            return 1
    device = torch.device('cuda' if cuda else 'cpu')
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        print(f'bench_gpu: {torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda})'
              f', median of {args.repeats} interleaved repeats', flush=True)
    results = open(args.results, 'a') if args.results else None

    def emit(record: dict, line: str) -> None:
        print(line, flush=True)
        if results is not None:
            results.write(json.dumps({**record, 'summary': line}) + '\n')
            results.flush()

    try:
        if 'dcnv3' not in args.skip:
            bench_dcnv3(SMOKE_STAGES if args.smoke else STAGES, args.batch, device, 2 if args.smoke else args.repeats,
                        emit)
        if 'backbone' not in args.skip:
            bench_backbones((64, 96) if args.smoke else (800, 1344), args.batch, device,
                            1 if args.smoke else args.repeats, emit)
    finally:
        if results is not None:
            results.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
