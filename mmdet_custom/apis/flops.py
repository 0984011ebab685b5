"""FLOPs and parameters of a detector (get_flops.py's count): mmcv's generic counter on ``forward_dummy`` plus the
DCN cores' cost it cannot see (the backbone's ``core_flops``, formula in ops_common/flops.py)."""
from __future__ import annotations

import math

import torch
from mmcv.cnn import get_model_complexity_info
from mmdet.models import build_detector

from mmcv_custom.cli.errors import UserError

__all__ = ['count', 'dummy_forward', 'padded_shape']


def padded_shape(shape: list[int], divisor: int) -> tuple[int, int]:
    h, w = (shape[0], shape[0]) if len(shape) == 1 else shape
    if divisor > 0:
        h, w = math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor
    return h, w


def dummy_forward(model):
    """The detector's ``forward_dummy``; for two-stage detectors with valid random proposals.

    mmdet's two-stage ``forward_dummy`` feeds ``torch.randn(1000, 4)`` as proposals: boxes with negative sizes,
    which the CPU RoIAlign rejects (the CUDA kernel accepts them). The same 1000 proposals with x2 > x1, y2 > y1
    cost the same FLOPs and run on the CPU as well.
    """
    from mmdet.models.detectors import TwoStageDetector
    if not isinstance(model, TwoStageDetector):
        return model.forward_dummy

    def forward(img: torch.Tensor):
        features = model.extract_feat(img)
        outs = (model.rpn_head(features),) if model.with_rpn else ()
        height, width = img.shape[-2:]
        scale = img.new_tensor([width, height])
        top_left = torch.rand(1000, 2, device=img.device) * scale
        size = torch.rand(1000, 2, device=img.device) * scale / 2 + 1
        proposals = torch.cat([top_left, top_left + size], dim=1)
        return outs + (model.roi_head.forward_dummy(features, proposals),)

    return forward


def count(cfg, height: int, width: int) -> dict:
    """``{'flops', 'params', 'dcnv3_flops', 'core'}`` of the detector in ``cfg`` for a (3, height, width) input
    (``dcnv3_flops``: the deformable sampling term, of the DCNv3 or DCNv4 ``core``)."""
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    if torch.cuda.is_available():
        model.cuda()
    model.eval()
    if not hasattr(model, 'forward_dummy'):
        raise UserError(f'FLOPs counting is not supported for {type(model).__name__} (no forward_dummy)')
    model.forward = dummy_forward(model)
    flops, params = get_model_complexity_info(model, (3, height, width), print_per_layer_stat=False,
                                              as_strings=False)
    backbone = getattr(model, 'backbone', None)
    # Backbones with DCN cores say what the cores cost (InternImage.core_flops, ops_common/flops.py).
    extra = backbone.core_flops(height, width) if hasattr(backbone, 'core_flops') else 0
    core = 'DCNv4' if getattr(backbone, 'core_op', None) == 'DCNv4' else 'DCNv3'
    return dict(flops=int(flops) + extra, params=int(params), dcnv3_flops=extra, core=core)
