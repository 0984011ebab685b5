"""DCNv3 exported as ONNX DeformConv (the deploy-config option of mmdet_custom/deploy/dcnv3_deform_conv.py): the
reordering equals the PyTorch core (float64, several geometries), the exported graph holds one DeformConv and no
GridSample and matches the PyTorch core in a stock ONNX Runtime at other sizes; bad option values are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_custom.deploy.dcnv3_deform_conv import chosen_op, dcnv3_core_deform_conv
from ops_dcnv3.functions import dcnv3_core_pytorch

DEPLOY_CONFIGS = Path(__file__).resolve().parents[2] / 'deploy' / 'configs' / 'mmdet'

# (kernel, stride, pad, dilation, group, group_channels, offset_scale)
GEOMETRIES = [(3, 1, 1, 1, 4, 8, 1.0), (3, 2, 1, 1, 2, 4, 0.7), (3, 1, 2, 2, 2, 4, 1.3), (5, 1, 2, 1, 1, 3, 1.0),
              (1, 1, 0, 1, 2, 2, 2.0)]


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_deform_conv_formulation_equals_pytorch_core(geometry):
    kernel, stride, pad, dilation, group, group_channels, offset_scale = geometry
    generator = torch.Generator().manual_seed(kernel * 10 + stride)
    batch, height, width = 2, 9, 11
    height_out = (height + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    width_out = (width + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    points = group * kernel * kernel
    x = torch.randn(batch, height, width, group * group_channels, generator=generator, dtype=torch.float64)
    offset = torch.randn(batch, height_out, width_out, points * 2, generator=generator, dtype=torch.float64) * 3
    mask = torch.rand(batch, height_out, width_out, points, generator=generator, dtype=torch.float64)
    args = (kernel, kernel, stride, stride, pad, pad, dilation, dilation, group, group_channels, offset_scale)
    expected = dcnv3_core_pytorch(x, offset, mask, *args)
    torch.testing.assert_close(dcnv3_core_deform_conv(x, offset, mask, *args), expected, rtol=1e-10, atol=1e-10)


def _deploy_cfg(opset: int, choice: str | None):
    from mmcv import Config
    cfg = dict(backend_config=dict(type='onnxruntime'),
               onnx_config=dict(type='onnx', opset_version=opset, input_names=['x'], output_names=['y']))
    if choice is not None:
        cfg['dcnv3_onnx_op'] = choice
    return Config(cfg)


def test_option_values():
    pytest.importorskip('mmdeploy')
    assert chosen_op(_deploy_cfg(16, None)) == 'GridSample'
    assert chosen_op(_deploy_cfg(19, 'DeformConv')) == 'DeformConv'
    with pytest.raises(ValueError, match='dcnv3_onnx_op must be one of'):
        chosen_op(_deploy_cfg(19, 'deformconv'))
    with pytest.raises(ValueError, match='opset_version >= 19'):
        chosen_op(_deploy_cfg(16, 'DeformConv'))


def test_deformconv_deploy_configs_choose_it():
    pytest.importorskip('mmdeploy')
    from mmdeploy.utils import load_config
    for name in ('instance-seg/instance-seg_onnxruntime_dynamic_deformconv.py',
                 'detection/detection_onnxruntime_dynamic_deformconv.py'):
        deploy_cfg = load_config(str(DEPLOY_CONFIGS / name))[0]
        assert chosen_op(deploy_cfg) == 'DeformConv' and deploy_cfg.onnx_config.opset_version == 19, name


def test_exported_module_is_one_deformconv_and_matches_core_at_other_sizes(deform_conv_dcnv3):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    module, path = deform_conv_dcnv3.module, deform_conv_dcnv3.path
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    op_types = [node.op_type for node in model.graph.node]
    assert op_types.count('DeformConv') == 1 and 'GridSample' not in op_types
    assert all(node.domain in ('', 'ai.onnx') for node in model.graph.node)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for shape in [(1, 12, 16, 32), (2, 9, 21, 32)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_allclose(session.run(None, {'x': x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)
