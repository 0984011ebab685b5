"""mmcv_custom.autocast_compat: mmcv's NMS and RoIAlign and mmdet's box decoding take half-precision inputs (as they
get under ``--amp bf16``) and compute in float32; float32 inputs take the unchanged path."""
from __future__ import annotations

import pytest
import torch
from mmcv.ops import RoIAlign, nms
from mmdet.core.bbox.coder import DeltaXYWHBBoxCoder

import mmcv_custom  # noqa: F401  (applies the patches)


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * 200
    wh = torch.rand(n, 2, generator=generator) * 80 + 4
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=str)
def test_nms_takes_half_precision_boxes(dtype):
    g = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(200, g).to(dtype), torch.rand(200, generator=g).to(dtype)
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    dets_ref, keep_ref = nms(boxes.float(), scores.float(), iou_threshold=0.5)
    assert torch.equal(keep, keep_ref) and len(keep) > 20


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=str)
def test_roi_align_takes_half_precision_features(dtype):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 8, 32, 40, generator=g)
    rois = torch.cat([torch.randint(0, 2, (16, 1), generator=g).float(), random_boxes(16, g) / 8], 1)
    layer = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0)
    feats_half = feats.to(dtype).requires_grad_()
    out = layer(feats_half, rois)
    assert out.dtype == dtype
    expected = layer(feats_half.detach().float(), rois)
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=0)  # pooled in float32, then rounded once
    out.float().sum().backward()
    assert feats_half.grad is not None and feats_half.grad.dtype == dtype


def test_box_decoding_is_float32():
    g = torch.Generator().manual_seed(2)
    coder = DeltaXYWHBBoxCoder(target_means=(0., 0., 0., 0.), target_stds=(0.1, 0.1, 0.2, 0.2))
    anchors, deltas = random_boxes(50, g) * 5, torch.randn(50, 4, generator=g)
    decoded = coder.decode(anchors.bfloat16(), deltas.bfloat16(), max_shape=(1333, 1333))
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, coder.decode(anchors.bfloat16().float(), deltas.bfloat16().float(),
                                                     max_shape=(1333, 1333)))
    assert coder.decode(anchors, deltas).dtype == torch.float32
