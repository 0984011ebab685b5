"""DCNv3 modules: parameter names, compiled core against the PyTorch core, fallback warning, ONNX export."""
from __future__ import annotations

import warnings

import pytest
import torch

import ops_dcnv3.functions.dcnv3_func as dcnv3_func
from ops_dcnv3.functions import extension_available
from ops_dcnv3.modules import DCNv3, DCNv3_pytorch

needs_extension = pytest.mark.skipif(not extension_available(), reason='ops_dcnv3._C is not built (make setup)')

EXPECTED_KEYS = [
    'dw_conv.0.weight', 'dw_conv.0.bias', 'dw_conv.1.1.weight', 'dw_conv.1.1.bias', 'offset.weight',
    'offset.bias', 'mask.weight', 'mask.bias', 'input_proj.weight', 'input_proj.bias', 'output_proj.weight',
    'output_proj.bias']


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Non-zero offset/mask weights, so the sampling really is deformable."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return module


def test_state_dict_keys_and_shapes_match_upstream():
    module = DCNv3(channels=64, group=4)
    state = module.state_dict()
    assert list(state) == EXPECTED_KEYS
    assert state['offset.weight'].shape == (4 * 9 * 2, 64)
    assert state['mask.weight'].shape == (4 * 9, 64)
    assert state['dw_conv.0.weight'].shape == (64, 1, 3, 3)
    with_cfs = DCNv3(channels=64, group=4, center_feature_scale=True).state_dict()
    assert list(with_cfs)[:2] == ['center_feature_scale_proj_weight', 'center_feature_scale_proj_bias']
    assert with_cfs['center_feature_scale_proj_weight'].shape == (4, 64)


@needs_extension
@pytest.mark.parametrize('kwargs', [dict(), dict(offset_scale=2.0, center_feature_scale=True),
                                    dict(kernel_size=5, pad=2, dw_kernel_size=5, group=8)])
def test_dcnv3_matches_dcnv3_pytorch(kwargs):
    kwargs = dict(kwargs)
    reference = randomised(DCNv3_pytorch(channels=64, group=kwargs.pop('group', 4), **kwargs)).double()
    module = DCNv3(channels=64, group=reference.group, **kwargs).double()
    module.load_state_dict(reference.state_dict())
    x = torch.randn(2, 9, 11, 64, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = module(x), reference(x_ref)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-9)
    for (name, p), p_ref in zip(module.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_falls_back_to_pytorch_core_with_one_warning(monkeypatch):
    monkeypatch.setattr(dcnv3_func.EXTENSION, 'load', lambda: None)
    monkeypatch.setattr(dcnv3_func.EXTENSION, 'fallback_warned', False)
    module = randomised(DCNv3(channels=32, group=2))
    reference = DCNv3_pytorch(channels=32, group=2)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(1, 6, 7, 32)
    with pytest.warns(UserWarning, match='make setup'):
        out = module(x)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # said once only
        module(x)
    torch.testing.assert_close(out, reference(x))


def test_pytorch_core_keeps_half_precision_dtypes():
    module = randomised(DCNv3_pytorch(channels=32, group=2)).to(torch.bfloat16)
    out = module(torch.randn(1, 5, 6, 32, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_onnx_export_uses_grid_sample_and_runs_in_onnxruntime(tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dcn = randomised(DCNv3(channels=32, group=2))

        def forward(self, x):  # NCHW in and out, as a detector backbone would see it
            return self.dcn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    model = Model().eval()
    x = torch.randn(1, 32, 9, 12)
    path = tmp_path / 'dcnv3.onnx'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (x,), str(path), opset_version=16, dynamo=False, input_names=['x'],
                          output_names=['y'])
    graph = onnx.load(str(path)).graph
    op_types = {node.op_type for node in graph.node}
    assert 'GridSample' in op_types
    assert all(node.domain in ('', 'ai.onnx') for node in graph.node), 'no custom operator domain'
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (onnx_out,) = session.run(None, {'x': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(onnx_out), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('module_cls', [DCNv3, DCNv3_pytorch])
def test_channels_first_input_is_one_clear_error(module_cls):
    module = module_cls(channels=32, group=2)
    with pytest.raises(ValueError) as error:
        module(torch.randn(1, 32, 6, 7))  # NCHW instead of NHWC
    message = str(error.value)
    assert '\n' not in message
    assert 'channels-last (N, H, W, C) with C = channels = 32' in message and '(1, 32, 6, 7)' in message
    assert 'channels-first' in message
    with pytest.raises(ValueError, match=r'got shape \(1, 6, 7, 16\)$'):
        module(torch.randn(1, 6, 7, 16))  # channels-last, but the wrong width: no channels-first hint
