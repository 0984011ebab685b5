"""InternImage-T and FlashInternImage-T backbone forwards on the CPU against ConvNeXt-T, measured in the same run.

Models (batch 1, 800x1333 by default, float32, eval, no_grad):
  internimage_t_kernel   InternImage-T, core_op='DCNv3' (the compiled CPU kernel; the PyTorch core if the
                         extension is not built, which the output then says)
  internimage_t_pytorch  InternImage-T, core_op='DCNv3_pytorch' (the pure-PyTorch core)
  flash_internimage_t    FlashInternImage-T, core_op='DCNv4' (the compiled ops_dcnv4 CPU kernel; its PyTorch
                         reference core if that extension is not built, which the output then says)
  convnext_t             timm's convnext_tiny(features_only=True): the same-FLOPs backbone a user would pick
Latency: median of interleaved repeats (the models take turns, so a change in machine load hits all of them),
printed as seconds and as the ratio to ConvNeXt-T; a last line gives FlashInternImage-T / InternImage-T (kernel).

Peak memory: torch's CPU tensors are invisible to tracemalloc, so each model is measured in a fresh subprocess:
build the model, run a small warm-up forward (lazy library initialisation), reset the resident high-water mark
(/proc/self/clear_refs), then one full-size forward; the figure is VmHWM (resident high-water mark) minus the
resident size just before that forward, i.e. the extra memory the forward needed at its peak (activations and
outputs; the weights are excluded). ru_maxrss is not used: it inherits the parent's size through fork/exec.

Layout copies: the number of aten::copy_ calls in one forward that are not the bias copy inside a Linear
(addmm), i.e. the permute/contiguous copies between layers, from the torch profiler on a small input.

usage: python tools/benchmarks/bench_backbone.py [--repeats 3] [--threads 2] [--size 800 1333] [--no-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

MODELS = ('internimage_t_kernel', 'internimage_t_pytorch', 'flash_internimage_t', 'convnext_t')
BASELINE = 'convnext_t'


def build_model(name: str) -> torch.nn.Module:
    if name == 'convnext_t':
        import timm
        return timm.create_model('convnext_tiny', pretrained=False, features_only=True).eval()
    if name == 'flash_internimage_t':
        from mmdet_custom.models.backbones.flash_intern_image import FlashInternImage
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return FlashInternImage.from_variant('T').eval()
    from mmdet_custom.models.backbones.intern_image import InternImage
    core_op = {'internimage_t_kernel': 'DCNv3', 'internimage_t_pytorch': 'DCNv3_pytorch'}[name]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return InternImage.from_variant('T', core_op=core_op).eval()


def kernel_description() -> str:
    from ops_dcnv3.functions import extension_available
    if not extension_available():
        return 'NOT BUILT: internimage_t_kernel runs the PyTorch core (fallback)'
    from ops_dcnv3 import _C
    isa = _C.cpu_isa() if hasattr(_C, 'cpu_isa') else 'unknown ISA'
    return f'compiled CPU kernel ({isa})'


def dcnv4_kernel_description() -> str:
    from ops_dcnv4.functions import extension_available
    if not extension_available():
        return 'NOT BUILT: flash_internimage_t runs the PyTorch reference core (fallback)'
    return 'compiled CPU kernel'


def make_input(height: int, width: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def time_models(names, x: torch.Tensor, repeats: int) -> dict[str, float]:
    models = {name: build_model(name) for name in names}
    times = {name: [] for name in names}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(x)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def measure_memory_here(name: str, height: int, width: int) -> None:
    """Child-process side of the peak-memory measurement; prints JSON."""
    model = build_model(name)
    x = make_input(height, width)
    with torch.no_grad():
        model(make_input(128, 128))  # warm-up
        # Reset the resident high-water mark (VmHWM) to the current size. (ru_maxrss would not do: it keeps
        # the parent's resident size inherited through fork/exec.)
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        before = _status_kib('VmRSS')
        model(x)
    peak = _status_kib('VmHWM')
    print(json.dumps({'extra_peak_mib': max(peak - before, 0) / 1024, 'peak_mib': peak / 1024}))


def peak_memory(name: str, height: int, width: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-child', name, '--size', str(height), str(width),
           '--threads', str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def layout_copies(name: str) -> int:
    from torch.profiler import ProfilerActivity, profile
    model = build_model(name)
    x = make_input(128, 192)
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    count = 0
    for event in prof.events():
        if event.name != 'aten::copy_':
            continue
        parent = event.cpu_parent
        if parent is None or parent.name != 'aten::addmm':
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--memory-child', metavar='MODEL', help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = args.size
    if args.memory_child:
        measure_memory_here(args.memory_child, height, width)
        return 0
    names = list(args.models)
    if BASELINE not in names:
        names.append(BASELINE)
    print(f'Backbone forward, batch 1, {height}x{width}, float32, {args.threads} threads, eval/no_grad; '
          f'median of {args.repeats} interleaved repeats; DCNv3 core: {kernel_description()}; '
          f'DCNv4 core: {dcnv4_kernel_description()}')
    latency = time_models(names, make_input(height, width), args.repeats)
    memory = {} if args.no_memory else {name: peak_memory(name, height, width, args.threads) for name in names}
    header = f'{"model":<22} {"latency s":>9} {"x ConvNeXt-T":>12} {"layout copies":>13}'
    if memory:
        header += f' {"extra peak MiB":>14} {"x ConvNeXt-T":>12} {"process peak MiB":>16}'
    print(header)
    for name in names:
        line = (f'{name:<22} {latency[name]:>9.2f} {latency[name] / latency[BASELINE]:>12.2f} '
                f'{layout_copies(name):>13d}')
        if memory:
            mem = memory[name]
            ratio = mem['extra_peak_mib'] / memory[BASELINE]['extra_peak_mib']
            line += f' {mem["extra_peak_mib"]:>14.0f} {ratio:>12.2f} {mem["peak_mib"]:>16.0f}'
        print(line, flush=True)
    if 'flash_internimage_t' in latency and 'internimage_t_kernel' in latency:
        ratio = latency['flash_internimage_t'] / latency['internimage_t_kernel']
        print(f'FlashInternImage-T / InternImage-T (kernel) latency: {ratio:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
