"""DCNv3's ONNX path: standard operators only (GridSample, opset 16), correct at sizes other than the traced one,
and free of trace-time constants."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ops_dcnv3.modules.dcnv3 import DCNv3

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')


def _dcnv3(channels: int = 32, group: int = 2) -> DCNv3:
    module = DCNv3(channels=channels, group=group).eval()
    with torch.no_grad():   # non-zero offsets and uneven masks (the zero init would sample the regular grid)
        module.offset.weight.normal_(0, 0.3)
        module.offset.bias.normal_(0, 2.0)
        module.mask.weight.normal_(0, 0.3)
    return module


def _export(module, example, path, dynamic: bool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.onnx.export(module, (example,), str(path), opset_version=16, dynamo=False, input_names=['x'],
                          output_names=['y'],
                          dynamic_axes={'x': {0: 'n', 1: 'h', 2: 'w'}, 'y': {0: 'n', 1: 'h', 2: 'w'}} if dynamic
                          else None)
    tracer_warnings = [str(w.message) for w in caught
                       if issubclass(w.category, torch.jit.TracerWarning) and 'ops_dcnv3' in w.filename]
    return onnx.load(str(path)), tracer_warnings


def test_dynamic_export_is_standard_and_correct_at_other_sizes(tmp_path):
    module = _dcnv3()
    model, tracer_warnings = _export(module, torch.randn(1, 12, 16, 32), tmp_path / 'dcnv3.onnx', dynamic=True)
    assert tracer_warnings == []     # no size frozen into the graph
    onnx.checker.check_model(model)
    assert all(node.domain in ('', 'ai.onnx') for node in model.graph.node)
    assert [node.op_type for node in model.graph.node].count('GridSample') == 1
    session = ort.InferenceSession(str(tmp_path / 'dcnv3.onnx'), providers=['CPUExecutionProvider'])
    for shape in [(1, 12, 16, 32), (2, 20, 9, 32), (1, 7, 31, 32)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = module(x).numpy()   # eager: the compiled kernel where built, else the PyTorch core
        np.testing.assert_allclose(session.run(None, {'x': x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)


def test_static_export_is_standard_and_correct(tmp_path):
    module = _dcnv3(channels=64, group=4)
    x = torch.randn(1, 10, 14, 64)
    model, tracer_warnings = _export(module, x, tmp_path / 'static.onnx', dynamic=False)
    assert tracer_warnings == []
    onnx.checker.check_model(model)
    assert all(node.domain in ('', 'ai.onnx') for node in model.graph.node)
    # Every size is known: the graph's input and output shapes are fully static.
    dims = [[d.dim_value for d in value.type.tensor_type.shape.dim] for value in (model.graph.input[0],
                                                                                     model.graph.output[0])]
    assert dims == [[1, 10, 14, 64], [1, 10, 14, 64]]
    session = ort.InferenceSession(str(tmp_path / 'static.onnx'), providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(session.run(None, {'x': x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)
