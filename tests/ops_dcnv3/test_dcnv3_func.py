"""DCNv3 core: the PyTorch reference against an independent loop, and the compiled kernel against the reference."""
from __future__ import annotations

import math

import pytest
import torch

from ops_dcnv3.functions import DCNv3Function, check_dcnv3_args, dcnv3_core_pytorch, extension_available
from tests.ops_dcnv3.dcnv3_cases import KERNEL_CASES, make_case

needs_extension = pytest.mark.skipif(not extension_available(), reason='ops_dcnv3._C is not built (make setup)')


def naive_dcnv3(inp, off, msk, kh, kw, sh, sw, ph, pw, dh, dw, group, gc, offset_scale):
    """Direct transcription of the location formula of docs/dcnv3_operator.md, one sample at a time."""
    N, H, W, C = inp.shape
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    half_h, half_w, K = dh * (kh - 1) // 2, dw * (kw - 1) // 2, kh * kw
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
                    for i in range(kw):
                        for j in range(kh):
                            k = i * kh + j
                            dx, dy = off[n, ho, wo, (g * K + k) * 2].item(), off[n, ho, wo, (g * K + k) * 2 + 1].item()
                            lx = base_x + (i * dw - half_w + dx) * offset_scale
                            ly = base_y + (j * dh - half_h + dy) * offset_scale
                            if not (-1 < ly < H and -1 < lx < W):
                                continue
                            y0, x0 = math.floor(ly), math.floor(lx)
                            fy, fx = ly - y0, lx - x0
                            value = ((1 - fy) * (1 - fx) * pixel(n, y0, x0, g) + (1 - fy) * fx * pixel(n, y0, x0 + 1, g)
                                     + fy * (1 - fx) * pixel(n, y0 + 1, x0, g) + fy * fx * pixel(n, y0 + 1, x0 + 1, g))
                            acc = acc + msk[n, ho, wo, g * K + k] * value
                    out[n, ho, wo, g * gc:(g + 1) * gc] = acc
    return out


# (N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale)
NAIVE_CASES = [
    (2, 7, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1.0),
    (1, 7, 6, 2, 3, 3, 3, 2, 2, 1, 1, 2, 2, 1.5),
    (1, 8, 7, 1, 4, 5, 5, 1, 1, 2, 2, 1, 1, 1.0),
    (2, 7, 9, 2, 2, 3, 5, 2, 1, 0, 2, 1, 2, 1.0),  # non-square kernel, pad_h != pad_w
    (1, 6, 7, 2, 3, 3, 3, 1, 2, 2, 1, 2, 1, 0.7),
]


@pytest.mark.parametrize('case', NAIVE_CASES)
def test_pytorch_core_matches_naive_loop(case):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)
    expected = naive_dcnv3(x, offset, mask, *args)
    actual = dcnv3_core_pytorch(x, offset, mask, *args)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@needs_extension
@pytest.mark.parametrize('case', NAIVE_CASES[:3])
def test_kernel_matches_naive_loop(case):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)
    torch.testing.assert_close(DCNv3Function.apply(x, offset, mask, *args, 64), naive_dcnv3(x, offset, mask, *args),
                               rtol=1e-12, atol=1e-12)


def kernel_and_reference(case, dtype, im2col_step=64):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, std = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, std, dtype)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)
    results = []
    for core in ('kernel', 'reference'):
        inputs = [t.clone().requires_grad_() for t in (x, offset, mask)]
        if core == 'kernel':
            out = DCNv3Function.apply(*inputs, *args, im2col_step)
        else:
            out = dcnv3_core_pytorch(*inputs, *args)
        grad_out = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        out.backward(grad_out)
        results.append([out.detach()] + [t.grad for t in inputs])
    return results


@needs_extension
@pytest.mark.parametrize('case', KERNEL_CASES)
def test_kernel_float64_forward_backward(case):
    kernel, reference = kernel_and_reference(case, torch.float64, im2col_step=2)
    for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), kernel, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f'{name}: {m}')


@needs_extension
@pytest.mark.parametrize('case', KERNEL_CASES)
def test_kernel_float32_forward_backward(case):
    kernel, reference = kernel_and_reference(case, torch.float32)
    for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), kernel, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f'{name}: {m}')


@needs_extension
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_kernel_half_precision_on_cpu(dtype):
    case = KERNEL_CASES[0]
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, osc, std = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, std, torch.float64)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, osc)
    # Half inputs: compare with the float64 result on the same (rounded) values.
    low = [t.to(dtype) for t in (x, offset, mask)]
    out = DCNv3Function.apply(*low, *args, 64)
    expected = dcnv3_core_pytorch(*[t.double() for t in low], *args)
    assert out.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 1e-1
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@needs_extension
def test_gradcheck_float64():
    x, offset, mask = make_case(2, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, offset_std=1.5)
    inputs = tuple(t.requires_grad_() for t in (x, offset, mask))
    assert torch.autograd.gradcheck(
        lambda a, b, c: DCNv3Function.apply(a, b, c, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.3, 64), inputs,
        eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_extension
def test_gradcheck_float64_stride_dilation_uneven_padding():
    x, offset, mask = make_case(1, 7, 6, 2, 2, 3, 5, 2, 1, 0, 2, 2, 1, offset_std=1.5)
    inputs = tuple(t.requires_grad_() for t in (x, offset, mask))
    assert torch.autograd.gradcheck(
        lambda a, b, c: DCNv3Function.apply(a, b, c, 3, 5, 2, 1, 0, 2, 2, 1, 2, 2, 0.8, 64), inputs,
        eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_extension
@pytest.mark.parametrize('N, group', [(2, 4), (1, 1)])  # whole-slice tasks; split rows with private buffers
def test_same_result_with_one_and_two_threads(N, group):
    case = (N, 9, 10, group, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0)
    previous = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            results[threads] = kernel_and_reference(case, torch.float32)[0]
    finally:
        torch.set_num_threads(previous)
    one, two = results[1], results[2]
    torch.testing.assert_close(one[0], two[0], rtol=0, atol=0)  # forward: each output written by one task
    torch.testing.assert_close(one[2], two[2], rtol=0, atol=0)
    torch.testing.assert_close(one[3], two[3], rtol=0, atol=0)
    if N * group >= 2:  # each (sample, group) slice accumulated by one thread in a fixed order: bitwise equal
        torch.testing.assert_close(one[1], two[1], rtol=0, atol=0)
    else:  # private buffers summed: same up to rounding
        torch.testing.assert_close(one[1], two[1], rtol=1e-6, atol=1e-6)


@needs_extension
def test_baseline_and_avx2_builds_agree(monkeypatch):
    """The AVX2 build of the CPU kernel against its baseline (SSE2) build: forward and backward, float64."""
    from ops_dcnv3 import _C
    if _C.cpu_isa() != 'avx2':
        pytest.skip(f'the default CPU path is {_C.cpu_isa()!r} (no AVX2/FMA): nothing to compare the baseline with')
    case = (2, 9, 11, 4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 2.0)
    torch.manual_seed(0)
    default = kernel_and_reference(case, torch.float64)[0]
    monkeypatch.setenv('DCNV3_CPU_ISA', 'baseline')
    assert _C.cpu_isa() == 'baseline'
    torch.manual_seed(0)
    baseline = kernel_and_reference(case, torch.float64)[0]
    for a, b in zip(default, baseline):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_extension
def test_non_contiguous_inputs_are_made_contiguous():
    x, offset, mask = make_case(2, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0)
    expected = DCNv3Function.apply(x, offset, mask, *args, 64)
    # Same values, other memory layouts: a transposed copy viewed back, and a strided slice.
    x_strided = x.transpose(1, 2).contiguous().transpose(1, 2)
    offset_strided = torch.cat([offset, offset], dim=-1)[..., :offset.shape[-1]]
    mask_strided = mask.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (x_strided.is_contiguous() or offset_strided.is_contiguous() or mask_strided.is_contiguous())
    torch.testing.assert_close(DCNv3Function.apply(x_strided, offset_strided, mask_strided, *args, 64), expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(dcnv3_core_pytorch(x_strided, offset_strided, mask_strided, *args), expected,
                               rtol=1e-12, atol=1e-12)


def bad_inputs():
    torch.manual_seed(0)
    x, offset, mask = make_case(1, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    yield 'rank', dict(input=x[0]), 'input must be a 4-D'
    yield 'channels-first layout', dict(input=x.permute(0, 3, 1, 2)), 'input must be channels-last'
    yield 'channels not divisible by group', dict(input=x[..., :15]), 'C = group \\* group_channels'
    yield 'offset for another output size', dict(offset=offset[:, :-1]), 'offset must have shape'
    yield 'mask with wrong point count', dict(mask=mask[..., :-1]), 'mask must have shape'
    yield 'mask rank', dict(mask=mask[0]), 'mask must be a 4-D'
    yield 'offset dtype', dict(offset=offset.float()), 'offset has dtype'
    yield 'mask dtype', dict(mask=mask.float()), 'mask has dtype'
    yield 'integer input', dict(input=x.long(), offset=offset.long(), mask=mask.long()), 'input must be floating'
    yield 'zero stride', dict(stride_h=0), 'stride_h must be'
    yield 'negative pad', dict(pad_w=-1), 'pad_w must be'
    yield 'too small', dict(pad_h=0, kernel_h=9), 'too small'


BAD_CASES = list(bad_inputs())


@pytest.mark.parametrize('label, change, message', BAD_CASES, ids=[c[0] for c in BAD_CASES])
@pytest.mark.parametrize('core', ['pytorch', pytest.param('kernel', marks=needs_extension)])
def test_bad_input_gives_one_clear_error(core, label, change, message):
    torch.manual_seed(0)
    x, offset, mask = make_case(1, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    kwargs = dict(input=x, offset=offset, mask=mask, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1,
                  pad_w=1, dilation_h=1, dilation_w=1, group=2, group_channels=8)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        if core == 'pytorch':
            dcnv3_core_pytorch(**kwargs, offset_scale=1.0)
        else:
            DCNv3Function.apply(*kwargs.values(), 1.0, 64)


def test_check_returns_output_size():
    x, offset, mask = make_case(1, 9, 8, 1, 2, 3, 3, 2, 1, 1, 0, 1, 1)
    assert check_dcnv3_args(x, offset, mask, 3, 3, 2, 1, 1, 0, 1, 1, 1, 2) == (5, 6)


@needs_extension
def test_compiled_entry_points_guard_their_invariants():
    """Called directly with arguments check_dcnv3_args refuses, _C names the failed invariant and the checker."""
    from ops_dcnv3 import _C
    x, offset, mask = make_case(1, 6, 7, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    calls = [
        ('input.size(3) == ', lambda: _C.dcnv3_forward(x[..., :15], offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 8,
                                                       1.0, 64)),
        ('offset.sizes() == ', lambda: _C.dcnv3_forward(x, offset[:, 1:], mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 8,
                                                        1.0, 64)),
        ('mask.scalar_type() == ', lambda: _C.dcnv3_forward(x, offset, mask.float(), 3, 3, 1, 1, 1, 1, 1, 1, 2, 8,
                                                            1.0, 64)),
        ('grad_output.sizes() == ', lambda: _C.dcnv3_backward(x, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0,
                                                              x[:, :-1], 64)),
        ('im2col_step >= 1', lambda: _C.dcnv3_forward(x, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0, 0)),
    ]
    for invariant, call in calls:
        with pytest.raises(RuntimeError) as error:
            call()
        message = str(error.value).splitlines()[0]
        assert invariant in message and 'check_dcnv3_args' in message, message


@needs_extension
def test_binding_docstrings_name_every_argument():
    from ops_dcnv3 import _C
    geometry = ('kernel_h', 'kernel_w', 'stride_h', 'stride_w', 'pad_h', 'pad_w', 'dilation_h', 'dilation_w',
                'group', 'group_channels', 'offset_scale')
    # upstream's arguments, then this project's optional mask_softmax (the fused softmax)
    forward_args = ('input', 'offset', 'mask') + geometry + ('im2col_step', 'mask_softmax')
    backward_args = ('input', 'offset', 'mask') + geometry + ('grad_output', 'im2col_step', 'mask_softmax')
    for function, names in ((_C.dcnv3_forward, forward_args), (_C.dcnv3_backward, backward_args)):
        signature = function.__doc__.splitlines()[0]
        assert [part.split(':')[0].strip() for part in signature.split('(', 1)[1].split(')')[0].split(',')] == \
            list(names)
        assert f'({len(names)} arguments' in function.__doc__


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_pytorch_core_half_precision_on_a_wide_map(dtype):
    # Locations near x = 300 need more precision than half floats have; they are computed in float32.
    x, offset, mask = make_case(1, 6, 320, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, offset_std=1.0)
    low = [t.to(dtype) for t in (x, offset, mask)]
    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 8, 1.0)
    out = dcnv3_core_pytorch(*low, *args)
    assert out.dtype == dtype
    expected = dcnv3_core_pytorch(*[t.double() for t in low], *args)
    tol = 5e-2 if dtype == torch.float16 else 2e-1
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
