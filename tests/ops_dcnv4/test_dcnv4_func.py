"""DCNv4 core: the PyTorch reference against an independent loop, and the compiled kernel against the reference."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

import ops_dcnv4.functions.dcnv4_func as dcnv4_func
from ops_dcnv4.functions import (
    DCNv4Function,
    check_dcnv4_args,
    dcnv4_core_pytorch,
    extension_available,
    load_extension,
    pack_offset_mask,
)
from tests.ops_dcnv4.dcnv4_cases import (
    HALF_TOLERANCE,
    KERNEL_CASES,
    KERNEL_IDS,
    assert_results_close,
    case_args,
    float64_kernel_on_rounded_inputs,
    make_case,
    run_core,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_extension = pytest.mark.skipif(not extension_available(), reason='ops_dcnv4._C is not built (make setup)')


def naive_dcnv4(inp, offset_mask, kh, kw, sh, sw, ph, pw, dh, dw, group, gc, offset_scale, remove_center):
    """Direct transcription of docs/dcnv4_operator.md, reading the packed layout one sample at a time."""
    N, H, W, C = inp.shape
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    half_h, half_w = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    K = kh * kw - int(remove_center)
    out = torch.zeros(N, Ho, Wo, C, dtype=inp.dtype)

    def pixel(n, y, x, g):
        if 0 <= y < H and 0 <= x < W:
            return inp[n, y, x, g * gc:(g + 1) * gc]
        return torch.zeros(gc, dtype=inp.dtype)

    for n in range(N):
        for ho in range(Ho):
            for wo in range(Wo):
                base_x, base_y = half_w - pw + wo * sw, half_h - ph + ho * sh
                for g in range(group):
                    acc = torch.zeros(gc, dtype=inp.dtype)
                    p = 0
                    for i in range(kw):
                        for j in range(kh):
                            if remove_center and i == kw // 2 and j == kh // 2:
                                continue
                            first = g * 3 * K
                            dx = offset_mask[n, ho, wo, first + 2 * p].item()
                            dy = offset_mask[n, ho, wo, first + 2 * p + 1].item()
                            m = offset_mask[n, ho, wo, first + 2 * K + p]
                            p += 1
                            lx = base_x + (i * dw - half_w + dx) * offset_scale
                            ly = base_y + (j * dh - half_h + dy) * offset_scale
                            if not (-1 < ly < H and -1 < lx < W):
                                continue
                            y0, x0 = math.floor(ly), math.floor(lx)
                            fy, fx = ly - y0, lx - x0
                            value = ((1 - fy) * (1 - fx) * pixel(n, y0, x0, g) + (1 - fy) * fx * pixel(n, y0, x0 + 1, g)
                                     + fy * (1 - fx) * pixel(n, y0 + 1, x0, g) + fy * fx * pixel(n, y0 + 1, x0 + 1, g))
                            acc = acc + m * value
                    out[n, ho, wo, g * gc:(g + 1) * gc] = acc
    return out


# (N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale, remove_center)
NAIVE_CASES = [
    (1, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, False),   # borders: large offsets leave the image
    (2, 7, 5, 1, 4, 3, 3, 2, 2, 1, 1, 1, 1, 0.5, True),    # stride, odd sizes, remove_center
    (1, 9, 8, 2, 2, 5, 5, 1, 1, 2, 2, 1, 1, 2.0, False),   # kernel 5
    (1, 8, 9, 1, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1.0, True),    # dilation, padding
    (1, 6, 7, 2, 2, 2, 3, 1, 2, 0, 1, 1, 1, 1.0, True),    # non-square, even kernel height, remove_center
    (1, 7, 7, 1, 5, 5, 5, 1, 1, 2, 2, 1, 1, 1.0, True),    # kernel 5 without its centre
]


def _args(case):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, rc = case
    return (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)


@pytest.mark.parametrize('case', NAIVE_CASES)
def test_pytorch_core_matches_naive_loop(case):
    x, offset_mask = make_case(*case[:13], remove_center=case[14])
    expected = naive_dcnv4(x, offset_mask, *_args(case), case[14])
    got = dcnv4_core_pytorch(x, offset_mask, *_args(case), case[14])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_samples_on_the_image_border_and_outside():
    """Hand-made locations: exactly on pixels, between pixels, past the last pixel, beyond -1 (nothing)."""
    x = torch.arange(1., 1. + 3 * 4, dtype=torch.float64).view(1, 3, 4, 1)  # value = 1 + 4*y + x
    offset_mask = torch.zeros(1, 3, 4, 8, dtype=torch.float64)  # 1x1 kernel, one group: (dx, dy, mask) + 5 pad
    cases = [((0.0, 0.0), 1.0), ((0.5, 0.0), 1.5), ((0.0, 1.5), 7.0), ((3.5, 0.0), 0.5 * 4), ((-1.5, 0.0), 0.0),
             ((-0.5, -0.5), 0.25 * 1)]
    for (dx, dy), expected in cases:
        offset_mask[0, 0, 0, :3] = torch.tensor([dx, dy, 2.0])  # the raw mask scales the sample
        out = dcnv4_core_pytorch(x, offset_mask, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1.0)
        assert out[0, 0, 0, 0].item() == pytest.approx(2.0 * expected), (dx, dy)
        assert naive_dcnv4(x, offset_mask, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1.0, False)[0, 0, 0, 0].item() == \
            pytest.approx(2.0 * expected)


def test_pytorch_core_padding_channels_are_not_read_and_get_zero_gradient():
    x, offset_mask = make_case(1, 5, 5, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, remove_center=False)  # 27 -> 32 channels
    assert offset_mask.shape[-1] == 32
    reference = dcnv4_core_pytorch(x, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1.0)
    poisoned = offset_mask.clone()
    poisoned[..., 27:] = float('nan')
    poisoned.requires_grad_()
    out = dcnv4_core_pytorch(x, poisoned, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1.0)
    torch.testing.assert_close(out, reference)
    out.sum().backward()
    assert torch.all(poisoned.grad[..., 27:] == 0)
    assert poisoned.grad[..., :27].abs().sum() > 0


def test_pack_offset_mask_layout():
    group, K = 2, 9
    offset = torch.arange(group * K * 2, dtype=torch.float64).view(1, 1, 1, -1)
    mask = 100 + torch.arange(group * K, dtype=torch.float64).view(1, 1, 1, -1)
    packed = pack_offset_mask(offset, mask, group)[0, 0, 0]
    assert packed.shape == (56,)
    assert packed[:18].tolist() == list(range(18))                 # group 0: offsets (x, y) pairs
    assert packed[18:27].tolist() == [100 + p for p in range(9)]   # group 0: mask
    assert packed[27:45].tolist() == list(range(18, 36))           # group 1: offsets
    assert packed[45:54].tolist() == [109 + p for p in range(9)]   # group 1: mask
    assert packed[54:].tolist() == [0, 0]                          # padding


def test_gradcheck_float64_pytorch_core():
    x, offset_mask = make_case(1, 3, 4, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, remove_center=True, offset_std=0.7)
    x.requires_grad_(), offset_mask.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: dcnv4_core_pytorch(a, b, 3, 3, 1, 1, 1, 1, 1, 1, 2, 2, 1.5, True), (x, offset_mask))


# name, change(args dict) -> None, expected message fragment
BAD_CASES = [
    ('offset_mask channels', lambda a: a.update(offset_mask=a['offset_mask'][..., :27]), 'offset_mask must have shape'),
    ('unpadded channels', lambda a: a.update(offset_mask=a['offset_mask'][..., :54]), 'rounded up to a multiple of 8'),
    ('layout', lambda a: a.update(input=a['input'].permute(0, 3, 1, 2)), 'input must be channels-last'),
    ('dtype', lambda a: a.update(offset_mask=a['offset_mask'].float()), 'offset_mask has dtype'),
    ('group', lambda a: a.update(group=3), 'C = group * group_channels'),
    ('3-D input', lambda a: a.update(input=a['input'][0]), 'input must be a 4-D'),
    ('integer input', lambda a: a.update(input=a['input'].long(), offset_mask=a['offset_mask'].long()),
     'input must be floating point'),
    ('kernel', lambda a: a.update(kernel_h=0), 'kernel_h must be an integer >= 1'),
    ('too small', lambda a: a.update(input=a['input'][:, :1], pad_h=0), 'too small for the kernel geometry'),
]


def _bad_call(core, change):
    x, offset_mask = make_case(1, 5, 5, 2, 4, 3, 3, 1, 1, 1, 1, 1, 1)
    a = dict(input=x, offset_mask=offset_mask, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
             dilation_h=1, dilation_w=1, group=2, group_channels=4, offset_scale=1.0)
    change(a)
    if core == 'pytorch':
        return lambda: dcnv4_core_pytorch(*a.values(), False)
    return lambda: DCNv4Function.apply(*a.values(), 64, False)


@pytest.mark.parametrize('label, change, message', BAD_CASES, ids=[c[0] for c in BAD_CASES])
@pytest.mark.parametrize('core', ['pytorch', pytest.param('kernel', marks=needs_extension)])
def test_bad_input_gives_one_clear_error(core, label, change, message):
    with pytest.raises(ValueError) as error:
        _bad_call(core, change)()
    text = str(error.value)
    assert message in text and '\n' not in text and text.startswith('dcnv4: ')


def test_check_returns_output_size_and_counts_the_removed_centre():
    x, offset_mask = make_case(1, 9, 8, 1, 2, 3, 3, 2, 1, 1, 0, 1, 1, remove_center=True)
    assert offset_mask.shape[-1] == 24  # 1 group x 3 x 8 points
    assert check_dcnv4_args(x, offset_mask, 3, 3, 2, 1, 1, 0, 1, 1, 1, 2, True) == (5, 6)
    with pytest.raises(ValueError, match='offset_mask must have shape'):
        check_dcnv4_args(x, offset_mask, 3, 3, 2, 1, 1, 0, 1, 1, 1, 2, False)


def test_function_falls_back_to_the_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(dcnv4_func.EXTENSION, 'module', None)
    monkeypatch.setattr(dcnv4_func.EXTENSION, 'error', ImportError('not built (simulated)'))
    monkeypatch.setattr(dcnv4_func.EXTENSION, 'fallback_warned', False)
    x, offset_mask = make_case(1, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1)
    x.requires_grad_(), offset_mask.requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = DCNv4Function.apply(x, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, False)
        DCNv4Function.apply(x, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, False)
    messages = [str(w.message) for w in caught if 'ops_dcnv4' in str(w.message)]
    assert len(messages) == 1 and 'make setup' in messages[0]
    torch.testing.assert_close(out, naive_dcnv4(x.detach(), offset_mask.detach(), 3, 3, 1, 1, 1, 1, 1, 1, 2, 3,
                                                1.0, False))
    out.sum().backward()
    assert x.grad is not None and offset_mask.grad is not None


@needs_extension
@pytest.mark.parametrize('case', NAIVE_CASES[:3])
def test_kernel_matches_naive_loop(case):
    x, offset_mask = make_case(*case[:13], remove_center=case[14])
    expected = naive_dcnv4(x, offset_mask, *_args(case), case[14])
    torch.testing.assert_close(DCNv4Function.apply(x, offset_mask, *_args(case), 64, case[14]), expected,
                               rtol=1e-10, atol=1e-10)


@needs_extension
@pytest.mark.parametrize('case', KERNEL_CASES, ids=KERNEL_IDS)
@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=['float64', 'float32'])
def test_kernel_forward_backward_matches_reference(case, dtype, tol):
    assert_results_close(run_core('kernel', case, dtype, im2col_step=2), run_core('reference', case, dtype), tol)


@needs_extension
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', [KERNEL_CASES[0], KERNEL_CASES[3]], ids=['k3', 'k5_remove_center'])
def test_kernel_half_precision_on_cpu(case, dtype):
    assert_results_close(run_core('kernel', case, dtype), float64_kernel_on_rounded_inputs(case, dtype),
                         HALF_TOLERANCE[dtype])


@needs_extension
@pytest.mark.parametrize('remove_center', [False, True])
def test_kernel_gradcheck_float64(remove_center):
    x, offset_mask = make_case(2, 4, 3, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, remove_center, offset_std=1.5)
    inputs = (x.requires_grad_(), offset_mask.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b: DCNv4Function.apply(a, b, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.3, 64, remove_center), inputs,
        eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_extension
def test_kernel_gradcheck_float64_kernel5_stride_dilation_uneven_padding():
    x, offset_mask = make_case(1, 7, 6, 1, 2, 5, 3, 2, 1, 1, 2, 1, 2, True, offset_std=1.5)
    inputs = (x.requires_grad_(), offset_mask.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b: DCNv4Function.apply(a, b, 5, 3, 2, 1, 1, 2, 1, 2, 1, 2, 0.8, 64, True), inputs,
        eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_extension
def test_kernel_padding_channels_not_read_and_zero_gradient():
    case = (1, 6, 7, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, False, 2.0)  # 27 used channels of 32
    x, offset_mask = make_case(*case[:13], remove_center=False)
    args = case_args(case)
    poisoned = offset_mask.clone()
    poisoned[..., 27:] = float('nan')
    ext = load_extension()
    out = ext.dcnv4_forward(x, poisoned, *args, 64, 0)
    grads = ext.dcnv4_backward(x, poisoned, torch.randn_like(out), *args, 64, 0)
    torch.testing.assert_close(out, dcnv4_core_pytorch(x, offset_mask, *args))
    assert torch.all(grads[1][..., 27:] == 0)
    assert torch.isfinite(grads[0]).all() and torch.isfinite(grads[1]).all()


@needs_extension
# Whole-slice tasks; rows split between threads with private buffers (one slice, enough work for two threads).
@pytest.mark.parametrize('N, group, H', [(2, 4, 9), (1, 1, 40)])
def test_same_result_with_one_and_two_threads(N, group, H):
    case = (N, H, 10, group, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, True, 2.0)
    previous = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[threads] = run_core('kernel', case, torch.float32)
    finally:
        torch.set_num_threads(previous)
    one, two = results[1], results[2]
    torch.testing.assert_close(one[0], two[0], rtol=0, atol=0)  # forward: each output written by one task
    torch.testing.assert_close(one[2], two[2], rtol=0, atol=0)
    if N * group >= 2:  # each (sample, group) slice accumulated by one thread in a fixed order: bitwise equal
        torch.testing.assert_close(one[1], two[1], rtol=0, atol=0)
    else:  # private buffers summed: same up to rounding
        torch.testing.assert_close(one[1], two[1], rtol=1e-6, atol=1e-6)


@needs_extension
@pytest.mark.skipif(extension_available() and load_extension().cpu_isa() != 'avx2',
                    reason='this CPU has no AVX2/FMA: only the baseline build of the kernel runs here')
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.bfloat16])
def test_baseline_and_avx2_builds_agree(monkeypatch, dtype):
    ext = load_extension()
    case = KERNEL_CASES[1]
    avx2 = run_core('kernel', case, dtype)
    monkeypatch.setenv('DCNV4_CPU_ISA', 'baseline')
    assert ext.cpu_isa() == 'baseline'
    baseline = run_core('kernel', case, dtype)
    reference = run_core('reference', case, dtype) if dtype != torch.bfloat16 else \
        float64_kernel_on_rounded_inputs(case, dtype)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 2e-1}[dtype]
    assert_results_close(baseline, reference, tol)  # the baseline build is checked on its own, not only vs AVX2
    assert_results_close(baseline, avx2, tol)


@needs_extension
def test_non_contiguous_inputs_are_made_contiguous():
    x, offset_mask = make_case(2, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0, 64, False)
    expected = DCNv4Function.apply(x, offset_mask, *args)
    x_strided = x.transpose(1, 2).contiguous().transpose(1, 2)
    offset_mask_strided = torch.cat([offset_mask, offset_mask], dim=-1)[..., :offset_mask.shape[-1]]
    assert not (x_strided.is_contiguous() or offset_mask_strided.is_contiguous())
    torch.testing.assert_close(DCNv4Function.apply(x_strided, offset_mask_strided, *args), expected, rtol=0, atol=0)


@needs_extension
def test_empty_batch():
    x, offset_mask = make_case(0, 5, 6, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    x.requires_grad_(), offset_mask.requires_grad_()
    out = DCNv4Function.apply(x, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0, 64, False)
    assert out.shape == (0, 5, 6, 16)
    out.sum().backward()
    assert x.grad.shape == x.shape and offset_mask.grad.shape == offset_mask.shape


@needs_extension
@pytest.mark.parametrize('entry', ['dcnv4_{}', 'cuda_bodies_{}_host'])
def test_compiled_entry_points_check_arguments_too(entry):
    """The binding guards the kernels' invariants only (check_dcnv4_args is the one place for messages): a direct
    call with arguments it would refuse fails with one line naming the invariant and check_dcnv4_args."""
    ext = load_extension()
    forward, backward = getattr(ext, entry.format('forward')), getattr(ext, entry.format('backward'))
    x, offset_mask = make_case(1, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    geometry = (3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0, 64)
    cases = [
        (lambda: forward(x[..., :15], offset_mask, *geometry, 0), 'input.size(3) == '),
        (lambda: forward(x, offset_mask[..., :54], *geometry, 0), 'offset_mask.sizes() == '),
        (lambda: forward(x, offset_mask, *geometry, 1), 'offset_mask.sizes() == '),  # 48 channels, not 56
        (lambda: forward(x, offset_mask.float(), *geometry, 0), 'offset_mask.scalar_type() == '),
        (lambda: backward(x, offset_mask, x[:, :-1], *geometry, 0), 'grad_output.sizes() == '),
        (lambda: forward(x, offset_mask, *geometry[:-1], 0, 0), 'im2col_step >= 1'),
        (lambda: forward(x, offset_mask, *geometry, 2), 'remove_center == 0 || remove_center == 1'),
    ]
    for call, invariant in cases:
        with pytest.raises(RuntimeError) as error:
            call()
        message = str(error.value).splitlines()[0]
        assert invariant in message and 'check_dcnv4_args' in message, message




def test_package_imports_and_runs_without_the_extension_warning_once():
    """A fresh interpreter in which ops_dcnv4._C cannot be imported: the module still runs, with one warning."""
    script = """
import importlib.abc, sys, warnings
class HideExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'ops_dcnv4._C':
            raise ImportError('hidden for the test')
sys.meta_path.insert(0, HideExtension())
import torch
from ops_dcnv4 import DCNv4, extension_available
assert not extension_available()
module = DCNv4(16, group=1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    for _ in range(3):
        module(torch.randn(1, 25, 16)).sum().backward()
messages = [str(w.message) for w in caught if 'ops_dcnv4' in str(w.message)]
print(len(messages), messages[0])
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    count, message = result.stdout.strip().split(' ', 1)
    assert count == '1' and 'not available' in message and 'make setup' in message
