"""mmdet_custom/deploy/mmdeploy_compat.py: each patch on a tiny module, exported through mmdeploy's own export
function and run in a stock ONNX Runtime against PyTorch. Each test fails without its patch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmdeploy')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')


def _export(mmdeploy_stack, module, inputs, path, backend='onnxruntime', opset=16, dynamic_axes=None):
    """mmdeploy.apis.onnx.export (rewriters active) of ``module``; returns the loaded ONNX model."""
    from mmdeploy.apis.onnx import export
    names = [f'input{index}' for index in range(len(inputs))]
    deploy_cfg = dict(backend_config=dict(type=backend),
                      onnx_config=dict(type='onnx', opset_version=opset, input_names=names, output_names=['output']))
    export(module.eval(), tuple(inputs), str(path.with_suffix('')), backend=backend, input_names=names,
           output_names=['output'], context_info=dict(deploy_cfg=deploy_cfg), opset_version=opset,
           dynamic_axes=dynamic_axes, keep_initializers_as_inputs=False)
    return onnx.load(str(path))


def _run_ort(path, inputs):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])   # stock: no custom-op library
    return session.run(None, {f'input{index}': value.numpy() for index, value in enumerate(inputs)})[0]


def _nodes(model, op_type):
    return [node for node in model.graph.node if node.op_type == op_type]


class _RoIAlign(torch.nn.Module):

    def __init__(self, aligned: bool):
        super().__init__()
        from mmcv.ops import RoIAlign
        self.roi_align = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=aligned)

    def forward(self, features, rois):
        return self.roi_align(features, rois)


@pytest.mark.parametrize('opset', [11, 16])
@pytest.mark.parametrize('aligned', [True, False])
def test_mmcv_roi_align_exports_as_standard_roialign(mmdeploy_stack, tmp_path, opset, aligned):
    features = torch.randn(2, 8, 32, 40)
    rois = torch.tensor([[0, 4.0, 6.0, 90.0, 70.0], [1, 20.5, 10.0, 60.0, 120.0], [0, 0.0, 0.0, 159.0, 127.0]])
    module = _RoIAlign(aligned)
    model = _export(mmdeploy_stack, module, [features, rois], tmp_path / 'roi_align.onnx', opset=opset)
    onnx.checker.check_model(model)
    assert len(_nodes(model, 'RoiAlign')) == 1 and not [n for n in model.graph.node if n.domain]
    for node in _nodes(model, 'Squeeze'):        # axes as an input from opset 13 on
        assert [a.name for a in node.attribute] == ([] if opset >= 13 else ['axes'])
    with torch.no_grad():
        expected = module(features, rois).numpy()
    np.testing.assert_allclose(_run_ort(tmp_path / 'roi_align.onnx', [features, rois]), expected, atol=1e-4)


class _Squeeze(torch.nn.Module):

    def forward(self, x):
        return x.squeeze(1) * 2


def test_squeeze_is_valid_at_opset16(mmdeploy_stack, tmp_path):
    x = torch.randn(3, 1, 5)
    model = _export(mmdeploy_stack, _Squeeze(), [x], tmp_path / 'squeeze.onnx')
    onnx.checker.check_model(model)
    (node,) = _nodes(model, 'Squeeze')
    assert len(node.input) == 2 and not node.attribute
    np.testing.assert_allclose(_run_ort(tmp_path / 'squeeze.onnx', [x]), (x.squeeze(1) * 2).numpy())


class _GridSample(torch.nn.Module):

    def forward(self, x, grid):
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def test_grid_sample_is_standard_gridsample_from_opset16(mmdeploy_stack, tmp_path):
    x, grid = torch.randn(2, 3, 9, 11), torch.rand(2, 5, 4, 2) * 2.4 - 1.2   # some points fall outside
    model = _export(mmdeploy_stack, _GridSample(), [x, grid], tmp_path / 'grid.onnx',
                    dynamic_axes={'input0': {2: 'h', 3: 'w'}, 'input1': {1: 'p'}})
    onnx.checker.check_model(model)
    assert [(n.domain, n.op_type) for n in model.graph.node if 'grid' in n.op_type.lower()] == [('', 'GridSample')]
    x, grid = torch.randn(2, 3, 13, 7), torch.rand(2, 6, 4, 2) * 2.4 - 1.2      # other sizes: dynamic axes
    np.testing.assert_allclose(_run_ort(tmp_path / 'grid.onnx', [x, grid]), _GridSample()(x, grid).numpy(),
                               atol=1e-5)


def test_grid_sample_below_opset16_keeps_mmdeploys_node(mmdeploy_stack, tmp_path):
    model = _export(mmdeploy_stack, _GridSample(), [torch.randn(1, 2, 5, 5), torch.rand(1, 3, 3, 2)],
                    tmp_path / 'grid11.onnx', opset=11)
    assert [(n.domain, n.op_type) for n in model.graph.node if 'grid' in n.op_type.lower()] == [
        ('mmdeploy', 'grid_sampler')]


class _GridPriors(torch.nn.Module):

    def forward(self, features):
        from mmdeploy.codebase.mmdet.core.anchor import GridPriorsTRTOp
        GridPriorsTRTOp.output = torch.zeros(features.shape[2] * features.shape[3] * 3, 4)
        base_anchors = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        return GridPriorsTRTOp.apply(base_anchors, features.shape[2], features.shape[3], 8, 8)


def test_tensorrt_grid_priors_unsqueeze_is_valid_at_opset16(mmdeploy_stack, tmp_path):
    from mmdeploy.codebase.mmdet.core.anchor import GridPriorsTRTOp
    try:
        model = _export(mmdeploy_stack, _GridPriors(), [torch.randn(1, 4, 6, 10)], tmp_path / 'priors.onnx',
                        backend='tensorrt', dynamic_axes={'input0': {2: 'h', 3: 'w'}})
    finally:
        GridPriorsTRTOp.output = None
    assert [n.op_type for n in model.graph.node if n.domain == 'mmdeploy'] == ['GridPriorsTRT']
    unsqueezes = _nodes(model, 'Unsqueeze')
    assert len(unsqueezes) >= 2 and all(len(n.input) == 2 and not n.attribute for n in unsqueezes)


def test_export_uses_torchscript_exporter_and_patches_are_idempotent(mmdeploy_stack, tmp_path):
    from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER

    from mmdet_custom.deploy.mmdeploy_compat import apply_mmdeploy_patches
    counts = lambda: (len(FUNCTION_REWRITER._registry._rewrite_records['torch.onnx.export']),  # noqa: E731
                      len(SYMBOLIC_REWRITER._registry._rewrite_records['squeeze']),
                      len(SYMBOLIC_REWRITER._registry._rewrite_records['grid_sampler']))
    before = counts()
    apply_mmdeploy_patches()
    assert counts() == before
    # The dynamo exporter (torch's default) would ignore mmdeploy's symbolic rewrites: the squeeze node above
    # would then not come from mmdeploy. Here a rewrite-only symbolic proves the TorchScript exporter ran.
    model = _export(mmdeploy_stack, _GridSample(), [torch.randn(1, 2, 5, 5), torch.rand(1, 3, 3, 2)],
                    tmp_path / 'ts.onnx', opset=11)
    assert any(n.domain == 'mmdeploy' for n in model.graph.node)


def test_rewriter_helpers_resolve_paths_through_their_own_imports(mmdeploy_stack, monkeypatch):
    # Python 3.13 (PEP 667): without the patch each of these stops with NameError ('mmdet', 'torch', the probe module
    # is not defined): mmdeploy's helpers exec an import, then eval the path in the same function. Before 3.13 the
    # patch is not applied and the helpers work as written.
    import sys
    import types

    from mmdeploy.core.rewriters.function_rewriter import _del_func, _set_func
    from mmdeploy.core.rewriters.rewriter_utils import eval_with_import, import_function
    from mmdet.models.detectors.base import BaseDetector

    assert import_function('mmdet.models.detectors.base.BaseDetector.forward') == (BaseDetector.forward, BaseDetector)
    assert eval_with_import('torch.Tensor.repeat') is torch.Tensor.repeat

    probe = types.ModuleType('internimage_rewriter_probe')

    def original():
        return 'original'

    def rewritten():
        return 'rewritten'

    probe.func = original
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    _set_func(f'{probe.__name__}.func', rewritten)
    assert probe.func() == 'rewritten'
    _del_func(f'{probe.__name__}.func')
    assert not hasattr(probe, 'func')
