"""The mask softmax fused into the DCNv3 kernels (``mask_softmax=True``: the mask holds logits).

Oracle: ``torch.softmax`` over each group's points, then the pure-PyTorch core, with autograd through both: the
unfused form DCNv3 computes upstream. Checked for the CPU kernel (both instruction-set builds), the CUDA kernel
bodies on the host harness, float64 gradcheck, half precision, and the ``DCNv3`` module, which takes this path.
"""
from __future__ import annotations

import pytest
import torch

from ops_dcnv3 import DCNv3, DCNv3_pytorch
from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch, extension_available, load_extension
from tests.ops_dcnv3.dcnv3_cases import (
    KERNEL_CASES,
    UNIT_SCALE_CASES,
    assert_results_close,
    case_inputs,
    cuda_kernel_skip_reason,
    forward_backward,
    harness,
    offsets_off_the_grid,
)

needs_extension = pytest.mark.skipif(not extension_available(), reason='ops_dcnv3._C is not built (make setup)')


def mask_logits_like(mask: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """Logits spread over a few units (softmax weights far from uniform), independent of the case's mask."""
    logits = torch.randn(mask.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 3
    return logits.to(device=mask.device, dtype=mask.dtype)


def softmax_then_core(x, offset, mask_logits, *args):
    """The unfused oracle: softmax over each group's K points, then the PyTorch core."""
    N, H, W, _ = mask_logits.shape
    group = args[8]
    mask = torch.softmax(mask_logits.reshape(N, H, W, group, -1), -1).reshape(N, H, W, -1)
    return dcnv3_core_pytorch(x, offset, mask, *args)


def fused_kernel(x, offset, mask_logits, *args):
    return DCNv3Function.apply(x, offset, mask_logits, *args, 64, True)


FULL_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


@needs_extension
@pytest.mark.parametrize('dtype', list(FULL_TOLERANCE), ids=['float64', 'float32'])
@pytest.mark.parametrize('case', KERNEL_CASES)
def test_cpu_kernel_fused_softmax_matches_softmax_then_core(case, dtype):
    x, offset, mask, args = case_inputs(case, dtype)
    logits = mask_logits_like(mask)
    tol = FULL_TOLERANCE[dtype]
    assert_results_close(forward_backward(fused_kernel, x, offset, logits, args),
                         forward_backward(softmax_then_core, x, offset, logits, args),
                         rtol=tol, atol=tol, what=f'fused-softmax CPU kernel vs softmax + PyTorch core, {dtype}')


@needs_extension
def test_cpu_kernel_without_the_option_uses_the_mask_as_given():
    """mask_softmax defaults to False (upstream's 15 arguments): the logits are then weights, not softmaxed."""
    x, offset, mask, args = case_inputs(KERNEL_CASES[0])
    logits = mask_logits_like(mask)
    plain = DCNv3Function.apply(x, offset, logits, *args, 64)
    torch.testing.assert_close(plain, dcnv3_core_pytorch(x, offset, logits, *args), rtol=1e-10, atol=1e-10)
    assert (plain - fused_kernel(x, offset, logits, *args)).abs().max() > 1e-2


@needs_extension
def test_fused_softmax_gradcheck_float64():
    x, offset, mask, args = case_inputs((2, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1.3, 1.5))
    inputs = tuple(t.requires_grad_() for t in (x, offset, mask_logits_like(mask)))
    assert torch.autograd.gradcheck(lambda a, b, c: fused_kernel(a, b, c, *args), inputs, eps=1e-6, atol=1e-6,
                                    rtol=1e-5)


@needs_extension
def test_fused_softmax_is_stable_for_large_logits():
    """Logits of +-1000 (exp overflows without the max subtraction): finite, and equal to the oracle."""
    x, offset, mask, args = case_inputs(KERNEL_CASES[0], torch.float32)
    logits = mask_logits_like(mask) * 300
    assert logits.abs().max() > 500
    kernel = forward_backward(fused_kernel, x, offset, logits, args)
    assert all(torch.isfinite(t).all() for t in kernel)
    assert_results_close(kernel, forward_backward(softmax_then_core, x, offset, logits, args), rtol=1e-4,
                         atol=1e-4, what='fused softmax, large logits')


@needs_extension
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=['float32', 'float64'])
def test_fused_softmax_propagates_nan_like_torch_softmax(dtype):
    """A NaN logit, or a group of all -inf logits, gives NaN weights (torch.softmax's result) in that group only:
    a diverging model must not be hidden by the kernel's exponential."""
    x, offset, mask, args = case_inputs(KERNEL_CASES[0], dtype)
    logits = mask_logits_like(mask)
    logits[0, 1, 2, 9 + 4] = float('nan')     # group 1 of pixel (1, 2)
    logits[1, 3, 0, 18:27] = float('-inf')    # group 2 of pixel (3, 0) of the second image
    fused, expected = fused_kernel(x, offset, logits, *args), softmax_then_core(x, offset, logits, *args)
    gc = args[9]
    assert fused[0, 1, 2, gc:2 * gc].isnan().all() and fused[1, 3, 0, 2 * gc:3 * gc].isnan().all()
    assert fused.isnan().sum() == 2 * gc
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4, equal_nan=True)


@needs_extension
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['float16', 'bfloat16'])
def test_fused_softmax_half_precision_matches_float64_oracle(dtype):
    case = KERNEL_CASES[UNIT_SCALE_CASES[0]]
    x, offset, mask, args = case_inputs(case)
    low = [t.to(dtype) for t in (x, offsets_off_the_grid(offset), mask_logits_like(mask))]
    actual = forward_backward(fused_kernel, *low, args)
    expected = forward_backward(softmax_then_core, *[t.double() for t in low], args, grad_rounded_to=dtype)
    tol = 1e-2 if dtype == torch.float16 else 6e-2
    for name, a, b in zip(('output', 'grad_input', 'grad_offset', 'grad_mask'), actual, expected):
        assert a.dtype == dtype
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * scale, msg=lambda m, name=name: f'{name}: {m}')


@needs_extension
def test_fused_softmax_baseline_and_avx2_builds_agree(monkeypatch):
    from ops_dcnv3 import _C
    if _C.cpu_isa() != 'avx2':
        pytest.skip(f'the default CPU path is {_C.cpu_isa()!r} (no AVX2/FMA): nothing to compare the baseline with')
    x, offset, mask, args = case_inputs(KERNEL_CASES[0])
    logits = mask_logits_like(mask)
    default = forward_backward(fused_kernel, x, offset, logits, args)
    monkeypatch.setenv('DCNV3_CPU_ISA', 'baseline')
    assert _C.cpu_isa() == 'baseline'
    assert_results_close(forward_backward(fused_kernel, x, offset, logits, args), default, rtol=1e-12, atol=1e-12,
                         what='baseline vs AVX2 build, fused softmax')


# The CUDA bodies on the host harness (test_dcnv3_cuda_bodies.py's autograd wrapper), with the softmax fused.
_C = load_extension()
needs_harness = pytest.mark.skipif(_C is None or not hasattr(_C, 'cuda_bodies_forward_host'),
                                   reason='ops_dcnv3._C with the CUDA-bodies host harness is not built (make setup)')


@needs_harness
@pytest.mark.parametrize('dtype', list(FULL_TOLERANCE), ids=['float64', 'float32'])
@pytest.mark.parametrize('case', KERNEL_CASES)
def test_cuda_bodies_fused_softmax_match_softmax_then_core(case, dtype):
    x, offset, mask, args = case_inputs(case, dtype)
    logits = mask_logits_like(mask)
    wide = 16 // x.element_size()
    expected = forward_backward(softmax_then_core, x, offset, logits, args)
    tol = FULL_TOLERANCE[dtype]
    for pack in ([1, wide] if case[4] % wide == 0 else [1]):
        assert_results_close(forward_backward(harness(pack, mask_softmax=True), x, offset, logits, args), expected,
                             rtol=tol, atol=tol,
                             what=f'CUDA bodies (pack {pack}) with fused softmax vs softmax + core, {dtype}')


@pytest.mark.cuda
@pytest.mark.skipif(cuda_kernel_skip_reason() is not None, reason=str(cuda_kernel_skip_reason()))
@pytest.mark.parametrize('case', KERNEL_CASES)
def test_cuda_kernel_fused_softmax_matches_softmax_then_core(case):
    x, offset, mask, args = case_inputs(case, torch.float64, device='cuda')
    logits = mask_logits_like(mask)
    assert_results_close(forward_backward(fused_kernel, x, offset, logits, args),
                         forward_backward(softmax_then_core, x, offset, logits, args), rtol=1e-10, atol=1e-10,
                         what='fused-softmax CUDA kernel vs softmax + PyTorch core')


@needs_extension
@pytest.mark.parametrize('kwargs', [dict(channels=32, group=2), dict(channels=64, group=4, center_feature_scale=True)])
def test_dcnv3_module_runs_the_fused_kernel_and_matches_dcnv3_pytorch(kwargs, monkeypatch):
    torch.manual_seed(0)
    reference = DCNv3_pytorch(**kwargs).double()
    for parameter in reference.parameters():  # offset/mask start at zero: non-trivial weights everywhere
        parameter.data.normal_(0, 0.3)
    module = DCNv3(**kwargs).double()
    module.load_state_dict(reference.state_dict())
    calls = []
    apply = DCNv3Function.apply
    monkeypatch.setattr(DCNv3Function, 'apply', lambda *a: calls.append(a[-1]) or apply(*a))
    x = torch.randn(2, 7, 9, kwargs['channels'], dtype=torch.float64)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [module(inputs[0]), reference(inputs[1])]
    assert calls == [True]  # one fused call, mask_softmax=True
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(outputs[0])
    for output in outputs:
        output.backward(grad_out)
    torch.testing.assert_close(inputs[0].grad, inputs[1].grad, rtol=1e-10, atol=1e-10)
    for (name, a), b in zip(module.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f'{name}: {m}')
