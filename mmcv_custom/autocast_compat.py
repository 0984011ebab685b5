"""mmcv's compiled ops under autocast (``train.py --amp bf16|fp16``, ``mmdet_custom.apis.amp``): applied on import of
``mmcv_custom``. Each patch names its symptom.

Half-precision boxes reach these ops because under autocast the heads' convolutions and linear layers return the
autocast dtype and box decoding keeps it; the ops themselves are box arithmetic that wants float32.
"""
from __future__ import annotations

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _float32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All of ``tensors`` in float32 when any is in half precision (the kernels want one dtype), else unchanged."""
    if any(t.dtype in LOW_PRECISION for t in tensors):
        return tuple(t.float() for t in tensors)
    return tensors


def patch_nms_float32_boxes() -> None:
    """PATCH (mmcv.ops.nms.NMSop.forward): mmcv's CPU NMS kernel takes float32/float64 only, so RPN proposals and
    test-time NMS under CPU bf16 autocast stop with "RuntimeError: expected scalar type Float but found BFloat16".
    Boxes and scores in half precision are compared in float32 (NMS returns indices, whatever the dtype)."""
    from mmcv.ops.nms import NMSop
    original = NMSop.forward
    if getattr(original, 'casts_half_boxes', False):
        return

    def forward(ctx, bboxes, scores, iou_threshold, offset, score_threshold, max_num):
        bboxes, scores = _float32(bboxes, scores)
        return original(ctx, bboxes, scores, iou_threshold, offset, score_threshold, max_num)

    forward.casts_half_boxes = True
    NMSop.forward = staticmethod(forward)


def patch_roi_align_float32() -> None:
    """PATCH (mmcv.ops.RoIAlign.forward, the layer mmdet's RoI extractors build): mmcv's CPU RoIAlign kernel has no
    bfloat16 (and its CUDA kernel none either): under bf16 autocast the two-stage heads stop with
    "NotImplementedError: "ROIAlign_forward" not implemented for 'BFloat16'". Half-precision features and boxes are
    pooled in float32 and the result cast back to the features' dtype (autograd carries the casts)."""
    from mmcv.ops import RoIAlign
    original = RoIAlign.forward
    if getattr(original, 'casts_half_features', False):
        return

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if input.dtype in LOW_PRECISION or rois.dtype in LOW_PRECISION:
            return original(self, *_float32(input, rois)).to(input.dtype)
        return original(self, input, rois)

    forward.casts_half_features = True
    RoIAlign.forward = forward


def patch_box_decoding_float32() -> None:
    """PATCH (mmdet's DeltaXYWHBBoxCoder.decode, the box coder of RPN and the R-CNN heads): under autocast the heads'
    regression outputs are half precision and the decoded boxes kept that dtype, which loses whole pixels on large
    images (bfloat16 has 8 significant bits) and stops at ``bbox2result``'s ``.numpy()`` ("TypeError: Got
    unsupported ScalarType BFloat16"). Boxes are decoded in float32."""
    from mmdet.core.bbox.coder import DeltaXYWHBBoxCoder
    original = DeltaXYWHBBoxCoder.decode
    if getattr(original, 'decodes_in_float32', False):
        return

    def decode(self, bboxes, pred_bboxes, max_shape=None, wh_ratio_clip=16 / 1000):
        bboxes, pred_bboxes = _float32(bboxes, pred_bboxes)
        return original(self, bboxes, pred_bboxes, max_shape, wh_ratio_clip)

    decode.decodes_in_float32 = True
    DeltaXYWHBBoxCoder.decode = decode


def apply_patches() -> None:
    patch_nms_float32_boxes()
    patch_roi_align_float32()
    patch_box_decoding_float32()
