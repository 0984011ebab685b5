"""DCNv3 as a torch custom op (ops_dcnv3/functions/custom_op.py): torch.library.opcheck (schema, fake tensor shapes,
autograd registration) on the kernel's geometries; the custom op equals the pure-PyTorch core (float64, forward and
gradients); the DCNv3 module compiles to one graph (no graph break, fullgraph=True) whose outputs and gradients
equal eager mode, and eager mode keeps the autograd function."""
from __future__ import annotations

import pytest
import torch

from ops_dcnv3.functions import dcnv3_core_pytorch, extension_available
from tests.helpers import assert_compiled_matches_eager, assert_one_graph
from tests.ops_dcnv3.dcnv3_cases import make_case

if not extension_available():
    pytest.skip('ops_dcnv3._C is not built (make setup builds it)', allow_module_level=True)

from ops_dcnv3.functions.custom_op import dcnv3, dcnv3_forward  # noqa: E402
from ops_dcnv3.modules import DCNv3  # noqa: E402

# (N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale)
CASES = [(1, 7, 9, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1.0), (2, 8, 6, 3, 5, 3, 5, 2, 1, 0, 2, 2, 1, 0.5)]


def _case(case, dtype=torch.float64):
    N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, scale = case
    x, offset, mask = make_case(N, H, W, group, gc, kh, kw, sh, sw, ph, pw, dh, dw, dtype=dtype)
    return (x, offset, mask), (kh, kw, sh, sw, ph, pw, dh, dw, group, gc, scale)


@pytest.mark.parametrize('mask_softmax', [False, True])
@pytest.mark.parametrize('case', CASES, ids=['same_size', 'strided'])
def test_opcheck(case, mask_softmax):
    torch.manual_seed(0)
    tensors, geometry = _case(case)
    tensors = [t.requires_grad_() for t in tensors]
    torch.library.opcheck(dcnv3_forward, (*tensors, *geometry, 64, mask_softmax))


@pytest.mark.parametrize('case', CASES, ids=['same_size', 'strided'])
def test_custom_op_equals_pytorch_core_float64(case):
    torch.manual_seed(1)
    tensors, geometry = _case(case)
    ours = [t.clone().requires_grad_() for t in tensors]
    reference = [t.clone().requires_grad_() for t in tensors]
    kh, kw, sh, sw, ph, pw, dh, dw, group, gc, scale = geometry
    out = dcnv3(*ours, *geometry, 64)
    expected = dcnv3_core_pytorch(*reference, kh, kw, sh, sw, ph, pw, dh, dw, group, gc, scale)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(out, expected)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got.grad, want.grad)


def _module_and_input():
    torch.manual_seed(2)
    module = DCNv3(channels=32, group=4, offset_scale=1.0)
    with torch.no_grad():   # non-trivial offsets and mask (their projections start at zero)
        for layer in (module.offset, module.mask):
            layer.weight.normal_(0, 0.3)
            layer.bias.normal_(0, 0.5)
    return module, torch.randn(2, 9, 11, 32)


def test_module_compiles_to_one_graph():
    assert_one_graph(*_module_and_input())


def test_compiled_module_equals_eager_forward_and_backward():
    assert_compiled_matches_eager(*_module_and_input())


def test_eager_mode_keeps_the_autograd_function():
    module, x = _module_and_input()
    core = module._core(module.input_proj(x), module.offset(module.dw_conv(x.permute(0, 3, 1, 2))),
                        module.mask(module.dw_conv(x.permute(0, 3, 1, 2))), mask_softmax=True)
    assert 'DCNv3Function' in core.grad_fn.name()
