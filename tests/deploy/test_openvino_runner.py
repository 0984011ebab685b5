"""The OpenVINO runner (mmdet_custom/deploy/openvino_runner.py) on a DCNv3 layer exported as ONNX DeformConv with
perturbed offsets: float32 equals PyTorch (the compiled kernel) at the export size and others, and the float64
PyTorch core; bf16 is close; the border flag matters (with bilinear_interpolation_pad=False the result differs); the
precision hint and threads are set as asked."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('openvino', reason='openvino is not installed (pip install -r requirements/openvino.txt)')

from mmdet_custom.deploy import openvino_runner  # noqa: E402

SHAPES = [(1, 12, 16, 32), (2, 9, 21, 32)]


def _expected(module, x):
    with torch.no_grad():
        return module(x).numpy()


@pytest.mark.parametrize('shape', SHAPES)
def test_float32_equals_pytorch(deform_conv_dcnv3, shape):
    runner = openvino_runner.OpenVINORunner(str(deform_conv_dcnv3.path), precision='fp32', threads=1)
    x = torch.randn(*shape)
    got = runner(x.numpy())[0]
    np.testing.assert_allclose(got, _expected(deform_conv_dcnv3.module, x), atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(got, deform_conv_dcnv3.float64(x), atol=2e-4, rtol=2e-4)


def test_bf16_is_close(deform_conv_dcnv3):
    runner = openvino_runner.OpenVINORunner(str(deform_conv_dcnv3.path), precision='bf16', threads=1)
    x = torch.randn(*SHAPES[0])
    expected = _expected(deform_conv_dcnv3.module, x)
    error = np.linalg.norm(runner(x.numpy())[0] - expected) / np.linalg.norm(expected)
    assert 1e-3 < error < 0.06   # really bf16 (float32 is within 1e-5), yet close


def test_border_interpolation_flag_matters(deform_conv_dcnv3, monkeypatch):
    """The same graph with OpenVINO's default bilinear_interpolation_pad=False differs from DCNv3 (at the borders):
    the flag the extension sets is what makes it DCNv3."""
    from openvino import opset8
    original = opset8.deformable_convolution
    monkeypatch.setattr(opset8, 'deformable_convolution',
                        lambda *args, **kwargs: original(*args, **{**kwargs, 'bilinear_interpolation_pad': False}))
    runner = openvino_runner.OpenVINORunner(str(deform_conv_dcnv3.path), precision='fp32', threads=1)
    x = torch.randn(*SHAPES[0])
    assert np.abs(runner(x.numpy())[0] - _expected(deform_conv_dcnv3.module, x)).max() > 1e-2


def test_precision_and_threads_are_set(deform_conv_dcnv3):
    import openvino.properties as props
    import openvino.properties.hint as hints
    runner = openvino_runner.OpenVINORunner(str(deform_conv_dcnv3.path), precision='fp32', threads=1)
    assert runner.compiled.get_property(hints.inference_precision).get_type_name() == 'f32'
    assert runner.compiled.get_property(props.inference_num_threads) == 1
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'int8'"):
        openvino_runner.compile_model(runner.model, 'int8')


def test_default_imports_do_not_load_openvino():
    import subprocess
    import sys
    code = ('import sys, mmcv_custom, mmdet_custom, mmdet_custom.deploy, mmdet_custom.deploy.openvino_runner\n'
            'print(sorted(name for name in sys.modules if name.split(".")[0] in ("openvino", "nncf")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'
