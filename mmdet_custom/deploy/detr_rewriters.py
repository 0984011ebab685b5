"""mmdeploy 0.14 rewriters that export the DINO family (DINO, CB-DINO) to ONNX with standard operators only.

mmdeploy 0.14 has no DINO support, and its DETR rewriters do not fit the two-stage deformable head. What differs in
an exported graph, and why:

* padding masks: the exported input is the image itself (mmdeploy sets ``img_shape`` to the input's shape), so no
  pixel is padding. The masks become all-False tensors shaped like each level, instead of being drawn from the
  trace-time ``batch_input_shape``, which would freeze the export image's size into a dynamic graph;
* level shapes: built from the traced feature shapes (``Shape`` nodes), not from Python ints, so a dynamic graph
  serves every input size;
* multi-scale deformable attention: always the ``grid_sample`` formulation (standard ``GridSample``, opset >= 16), as
  mmcv runs it on the CPU; mmcv's CUDA function would otherwise be traced as an opaque node;
* boxes: top-k over the last decoder layer's sigmoid scores for the whole batch at once (mmdeploy's DETR
  post-processing), giving ``dets`` (B, max_per_img, 5) and ``labels`` (B, max_per_img) as PyTorch's
  ``get_bboxes`` does per image.

On an unpadded input (an image whose resized size is already a multiple of the pad divisor) the exported graph
computes what PyTorch computes.
"""
from __future__ import annotations

_registered = False


def apply_detr_rewriters() -> None:
    """Register the rewriters below with mmdeploy (idempotent)."""
    global _registered
    if _registered:
        return
    _register()
    _registered = True


def _register() -> None:
    import torch
    from mmdeploy.codebase.mmdet.models.dense_heads.detr_head import detrhead__get_bboxes__default
    from mmdeploy.core import FUNCTION_REWRITER

    @FUNCTION_REWRITER.register_rewriter(
        'mmdet_custom.models.dense_heads.dino_head.DINOHead.level_padding_masks')
    def dino_head__level_padding_masks(ctx, mlvl_feats, img_metas):
        return [torch.zeros_like(feat[:, 0], dtype=torch.bool) for feat in mlvl_feats]

    @FUNCTION_REWRITER.register_rewriter(
        'mmdet_custom.models.utils.transformer.DinoTransformer.level_spatial_shapes')
    def dino_transformer__level_spatial_shapes(ctx, self, mlvl_feats):
        # The token-count check of the eager method compares traced sizes: nothing to check in a graph.
        return torch.stack([torch._shape_as_tensor(feat)[-2:] for feat in mlvl_feats]).to(mlvl_feats[0].device)

    @FUNCTION_REWRITER.register_rewriter(
        'mmdet_custom.models.dense_heads.dino_head.DINOHead.get_bboxes')
    def dino_head__get_bboxes(ctx, self, all_cls_scores, all_bbox_preds, enc_cls_scores, enc_bbox_preds,
                              img_metas, rescale=False):
        # mmdeploy's DETR rewrite reads layer -1 of the last feature level's outputs: one level here.
        return detrhead__get_bboxes__default(ctx, self, [all_cls_scores], [all_bbox_preds], img_metas, rescale)

    @FUNCTION_REWRITER.register_rewriter(
        'mmcv.ops.multi_scale_deform_attn.MultiScaleDeformableAttnFunction.apply')
    def multi_scale_deform_attn__grid_sample(ctx, value, spatial_shapes, level_start_index, sampling_locations,
                                             attention_weights, im2col_step):
        from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)
