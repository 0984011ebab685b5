"""DCNv3 core on the CPU: the compiled kernel against the pure-PyTorch core, measured in the same run.

Shapes: InternImage-T's four stages for an 800x1333 image (kernel 3, stride 1, pad 1, group_channels 16), batch 1
and 2, float32. Printed per shape: forward and forward+backward time of both cores (median of interleaved repeats,
so a busy machine slows both alike) as speed-up ratios, and peak memory as a ratio.

Peak memory: torch's CPU tensors are invisible to tracemalloc, so each memory figure comes from a fresh
subprocess (Linux) that builds the inputs, runs a tiny warm-up (lazy library initialisation), resets the kernel's
resident-size high-water mark (/proc/self/clear_refs), runs the measured call once and reports the high-water mark
(VmHWM) minus the resident size just before the call: the extra memory the call needed at its peak (outputs, saved
tensors and gradients included). The child runs with MALLOC_MMAP_THRESHOLD_ fixed at 64 KiB so that freed tensors
are returned to the system at once and the resident size follows the live tensors.

usage: python tools/benchmarks/bench_dcnv3.py [--repeats 5] [--threads 2] [--batches 1 2] [--stages 1 2 3 4]
       [--no-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch, extension_available  # noqa: E402

# (height, width, channels, groups) of InternImage-T's stages for an 800x1333 input (strides 4, 8, 16, 32).
STAGES = {1: (200, 336, 64, 4), 2: (100, 168, 128, 8), 3: (50, 84, 256, 16), 4: (25, 42, 512, 32)}
KERNEL, STRIDE, PAD, DILATION, OFFSET_SCALE = 3, 1, 1, 1, 1.0


def make_inputs(batch: int, stage: int, requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    height, width, channels, groups = STAGES[stage]
    points = KERNEL * KERNEL
    generator = torch.Generator().manual_seed(stage * 10 + batch)
    x = torch.randn(batch, height, width, channels, generator=generator)
    offset = torch.randn(batch, height, width, groups * points * 2, generator=generator) * 2
    mask = torch.randn(batch, height, width, groups, points, generator=generator).softmax(-1)
    mask = mask.reshape(batch, height, width, groups * points)
    return tuple(t.requires_grad_(requires_grad) for t in (x, offset, mask))


def run_core(core: str, x, offset, mask, backward: bool) -> None:
    groups = offset.shape[-1] // (2 * KERNEL * KERNEL)
    args = (KERNEL, KERNEL, STRIDE, STRIDE, PAD, PAD, DILATION, DILATION, groups, x.shape[-1] // groups, OFFSET_SCALE)
    with torch.set_grad_enabled(backward):
        if core == 'pytorch':
            out = dcnv3_core_pytorch(x, offset, mask, *args)
        else:
            out = DCNv3Function.apply(x, offset, mask, *args, 256)
        if backward:
            out.backward(torch.ones_like(out))


def time_pair(batch: int, stage: int, backward: bool, repeats: int) -> dict[str, float]:
    """Median seconds per call of each core; the two cores alternate so load changes hit both."""
    inputs = make_inputs(batch, stage, backward)
    times = {'pytorch': [], 'kernel': []}
    for core in times:  # warm-up
        run_core(core, *inputs, backward)
    for _ in range(repeats):
        for core in times:
            for t in inputs:
                t.grad = None
            start = time.perf_counter()
            run_core(core, *inputs, backward)
            times[core].append(time.perf_counter() - start)
    return {core: statistics.median(values) for core, values in times.items()}


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure_memory_here(core: str, batch: int, stage: int, backward: bool) -> None:
    """Child-process side of peak-memory measurement; prints the extra peak in MiB as JSON."""
    run_core(core, *make_inputs(1, 4, backward), backward)  # warm-up on the smallest shape
    inputs = make_inputs(batch, stage, backward)
    with open('/proc/self/clear_refs', 'w') as handle:
        handle.write('5')  # reset VmHWM to the current resident size
    before = _status_kib('VmRSS')
    run_core(core, *inputs, backward)
    peak = _status_kib('VmHWM')
    print(json.dumps({'extra_peak_mib': max(peak - before, 0) / 1024}))


def peak_memory(core: str, batch: int, stage: int, backward: bool, threads: int) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-child', core, str(batch), str(stage),
           str(int(backward)), '--threads', str(threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])['extra_peak_mib']


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--stages', type=int, nargs='+', default=[1, 2, 3, 4])
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--memory-child', nargs=4, metavar=('CORE', 'BATCH', 'STAGE', 'BACKWARD'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        core, batch, stage, backward = args.memory_child
        measure_memory_here(core, int(batch), int(stage), bool(int(backward)))
        return 0
    if not extension_available():
        print('ops_dcnv3._C is not built: run `make setup` or `cd ops_dcnv3 && sh make.sh`', file=sys.stderr)
        return 1
    from ops_dcnv3 import _C
    print(f'DCNv3 CPU kernel ({_C.cpu_isa()}) vs the PyTorch core, float32, {args.threads} threads, '
          f'median of {args.repeats}; ratios = PyTorch / kernel (speed-up) and kernel / PyTorch (memory)')
    header = (f'{"stage":>5} {"batch":>5} | {"fwd torch ms":>12} {"fwd kern ms":>11} {"fwd x":>6} | '
              f'{"f+b torch ms":>12} {"f+b kern ms":>11} {"f+b x":>6}')
    if not args.no_memory:
        header += f' | {"fwd MiB torch/kern":>18} {"f+b MiB torch/kern":>18} {"mem fwd":>7} {"mem f+b":>7}'
    print(header)
    for stage in args.stages:
        for batch in args.batches:
            fwd = time_pair(batch, stage, False, args.repeats)
            both = time_pair(batch, stage, True, args.repeats)
            line = (f'{stage:>5} {batch:>5} | {fwd["pytorch"] * 1e3:>12.1f} {fwd["kernel"] * 1e3:>11.1f} '
                    f'{fwd["pytorch"] / fwd["kernel"]:>6.1f} | {both["pytorch"] * 1e3:>12.1f} '
                    f'{both["kernel"] * 1e3:>11.1f} {both["pytorch"] / both["kernel"]:>6.1f}')
            if not args.no_memory:
                mems = [{core: peak_memory(core, batch, stage, backward, args.threads)
                         for core in ('pytorch', 'kernel')} for backward in (False, True)]
                line += ' | ' + ' '.join(f'{m["pytorch"]:>9.0f}/{m["kernel"]:<8.0f}' for m in mems)
                line += ' ' + ' '.join(f'{m["kernel"] / m["pytorch"]:>7.2f}' for m in mems)
            print(line, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
