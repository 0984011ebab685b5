"""``--compile`` (mmdet_custom/apis/compile.py): the demo Mask R-CNN's InternImage backbone (DCNv3 on the compiled
kernel, as a torch custom op) is one graph, and the detector with a compiled backbone gives eager mode's detections
with unchanged state-dict keys. aot_eager stands in for inductor (the same dynamo graph, no C++ build: inductor takes
a minute here; tools/benchmarks/bench_export.py measures it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmcv import Config

import mmdet_custom  # noqa: F401
from mmdet_custom.apis.compile import compile_backbone
from ops_dcnv3.functions import extension_available
from tests.apis.test_amp import REPO
from tests.helpers import assert_one_graph

if not extension_available():
    pytest.skip('ops_dcnv3._C is not built (make setup builds it)', allow_module_level=True)


def _detector():
    from mmdet.models import build_detector
    cfg = Config.fromfile(str(REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.depths = [1, 1, 1, 1]
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return model.eval()


def test_internimage_backbone_is_one_graph():
    assert_one_graph(_detector().backbone, torch.randn(1, 3, 96, 128))


def test_compiled_backbone_gives_eager_detections():
    model = _detector()
    keys = list(model.state_dict())
    image = torch.rand(1, 3, 96, 128) * 2 - 1
    meta = [dict(img_shape=(96, 128, 3), ori_shape=(96, 128, 3), pad_shape=(96, 128, 3),
                 scale_factor=np.ones(4, dtype=np.float32), flip=False)]
    with torch.no_grad():
        expected = model(return_loss=False, rescale=True, img=[image], img_metas=[meta])
        compile_backbone(model, backend='aot_eager')
        got = model(return_loss=False, rescale=True, img=[image], img_metas=[meta])
    assert model.backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == keys
    assert sum(len(boxes) for boxes in expected[0][0]) > 0
    for ours, reference in zip(got[0][0], expected[0][0]):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


def test_compile_disabled_leaves_the_backbone_eager():
    model = _detector()
    compile_backbone(model, enabled=False)
    assert model.backbone._compiled_call_impl is None
