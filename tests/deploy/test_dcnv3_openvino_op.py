"""DCNv3 as one custom ``mmdet_custom::DCNv3`` node run by OpenVINO on the project's compiled kernel
(mmdet_custom/deploy/dcnv3_openvino_op.py), on a DCNv3 layer with perturbed offsets (the conftest fixture's module,
exported again with ``dcnv3_onnx_op='DCNv3'``): the graph holds that node and no other sampling operator; OpenVINO
float32 equals PyTorch (the compiled kernel) and the float64 PyTorch core at several sizes, from ONNX and from IR;
a wrong attribute in the conversion is caught."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('openvino', reason='openvino is not installed (pip install -r requirements/openvino.txt)')
onnx = pytest.importorskip('onnx')

from mmdet_custom.deploy import dcnv3_openvino_op, openvino_runner  # noqa: E402
from ops_dcnv3.functions import extension_available  # noqa: E402

SHAPES = [(1, 12, 16, 32), (2, 9, 21, 32)]


@pytest.fixture(scope='module')
def custom_node_dcnv3(deform_conv_dcnv3, tmp_path_factory):
    """The fixture's DCNv3 module exported with one mmdet_custom::DCNv3 node (dynamic N, H, W): ``module``,
    ``path``."""
    if not extension_available():
        pytest.skip('ops_dcnv3._C is not built: the OpenVINO DCNv3 op runs the compiled kernel')
    path = deform_conv_dcnv3.export(tmp_path_factory.mktemp('dcnv3_node') / 'dcnv3.onnx', 'DCNv3', 'openvino')
    module = deform_conv_dcnv3.module
    return module, path


def test_graph_holds_one_custom_node(custom_node_dcnv3):
    _, path = custom_node_dcnv3
    model = onnx.load(str(path))
    nodes = [(node.domain, node.op_type) for node in model.graph.node]
    assert nodes.count(('mmdet_custom', 'DCNv3')) == 1
    assert not {'GridSample', 'DeformConv'} & {op_type for _, op_type in nodes}
    (node,) = [node for node in model.graph.node if node.op_type == 'DCNv3']
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    assert attributes['group'] == 4 and attributes['group_channels'] == 8 and attributes['kernel_h'] == 3
    assert attributes['offset_scale'] == pytest.approx(1.5)
    ov_model = openvino_runner.read_model(str(path))
    assert [op.get_type_name() for op in ov_model.get_ordered_ops()].count('DCNv3') == 1


@pytest.mark.parametrize('shape', SHAPES)
def test_float32_equals_pytorch(deform_conv_dcnv3, custom_node_dcnv3, shape):
    module, path = custom_node_dcnv3
    runner = openvino_runner.OpenVINORunner(str(path), precision='fp32', threads=1)
    x = torch.randn(*shape)
    got = runner(x.numpy())[0]
    with torch.no_grad():
        expected = module(x).numpy()   # eager: the compiled kernel
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(got, deform_conv_dcnv3.float64(x), atol=2e-4, rtol=2e-4)


def test_ir_round_trip(custom_node_dcnv3, tmp_path):
    module, path = custom_node_dcnv3
    xml = openvino_runner.convert_to_ir(str(path), str(tmp_path / 'dcnv3.xml'))
    runner = openvino_runner.OpenVINORunner(xml, precision='fp32', threads=1)
    x = torch.randn(*SHAPES[0])
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(runner(x.numpy())[0], expected, atol=2e-4, rtol=2e-4)


def test_bf16_hint_keeps_the_kernel_in_float32(custom_node_dcnv3):
    """Under the bf16 hint the linear layers run in bf16 and the custom op still gets float32 tensors: close."""
    module, path = custom_node_dcnv3
    runner = openvino_runner.OpenVINORunner(str(path), precision='bf16', threads=1)
    x = torch.randn(*SHAPES[0])
    with torch.no_grad():
        expected = module(x).numpy()
    error = np.linalg.norm(runner(x.numpy())[0] - expected) / np.linalg.norm(expected)
    assert 1e-3 < error < 0.06


def test_wrong_offset_scale_is_caught(custom_node_dcnv3, monkeypatch):
    """A planted error: the conversion drops the offset_scale attribute (1.0 instead of 1.5)."""
    module, path = custom_node_dcnv3
    from openvino.frontend.onnx import ConversionExtension
    op_class = dcnv3_openvino_op.dcnv3_op_class()

    def convert(node):
        attributes = {name: node.get_attribute(name) for name in dcnv3_openvino_op.GEOMETRY}
        return op_class([node.get_input(index) for index in range(3)], {**attributes, 'offset_scale': 1.0}).outputs()

    monkeypatch.setattr(dcnv3_openvino_op, 'conversion_extension', lambda: ConversionExtension('DCNv3', 'mmdet_custom',
                                                                                               convert))
    runner = openvino_runner.OpenVINORunner(str(path), precision='fp32', threads=1)
    x = torch.randn(*SHAPES[0])
    with torch.no_grad():
        expected = module(x).numpy()
    assert np.abs(runner(x.numpy())[0] - expected).max() > 1e-2
