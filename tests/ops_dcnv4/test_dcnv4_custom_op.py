"""DCNv4 as a torch custom op (ops_dcnv4/functions/custom_op.py): torch.library.opcheck (schema, fake tensor shapes,
autograd registration); the custom op equals the pure-PyTorch core (float64, forward and gradients); the DCNv4 module
compiles to one graph whose outputs and gradients equal eager mode."""
from __future__ import annotations

import pytest
import torch

from ops_dcnv4.functions import dcnv4_core_pytorch, extension_available
from tests.helpers import assert_compiled_matches_eager, assert_one_graph
from tests.ops_dcnv4.dcnv4_cases import KERNEL_CASES, case_args, make_case

if not extension_available():
    pytest.skip('ops_dcnv4._C is not built (make setup builds it)', allow_module_level=True)

from ops_dcnv4.functions.custom_op import dcnv4, dcnv4_forward  # noqa: E402
from ops_dcnv4.modules import DCNv4  # noqa: E402

CASES = [KERNEL_CASES[1], KERNEL_CASES[5]]   # remove_center with a 3x3 kernel; 5x3, stride, uneven padding


def _case(case):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, scale, remove_center, std = case
    torch.manual_seed(0)
    return make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, remove_center, std), remove_center


@pytest.mark.parametrize('case', CASES, ids=['remove_center', 'strided'])
def test_opcheck(case):
    tensors, remove_center = _case(case)
    tensors = [t.requires_grad_() for t in tensors]
    torch.library.opcheck(dcnv4_forward, (*tensors, *case_args(case), 64, int(remove_center)))


@pytest.mark.parametrize('case', CASES, ids=['remove_center', 'strided'])
def test_custom_op_equals_pytorch_core_float64(case):
    tensors, remove_center = _case(case)
    ours = [t.clone().requires_grad_() for t in tensors]
    reference = [t.clone().requires_grad_() for t in tensors]
    out = dcnv4(*ours, *case_args(case), 64, remove_center)
    expected = dcnv4_core_pytorch(*reference, *case_args(case), remove_center)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(out, expected)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got.grad, want.grad)


def _module_and_input():
    torch.manual_seed(2)
    module = DCNv4(channels=32, group=2, dw_kernel_size=3)
    with torch.no_grad():   # non-trivial offsets and mask (the projection starts at zero)
        module.offset_mask.weight.normal_(0, 0.3)
        module.offset_mask.bias.normal_(0, 0.5)
    return module, torch.randn(2, 64, 32)


def test_module_compiles_to_one_graph():
    assert_one_graph(*_module_and_input())


def test_compiled_module_equals_eager_forward_and_backward():
    assert_compiled_matches_eager(*_module_and_input())
