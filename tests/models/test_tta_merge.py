"""Merging TTA views (mmdet_custom.models.utils.tta_merge): NMS and weighted boxes fusion on boxes worked by hand."""
from __future__ import annotations

import pytest
import torch

from mmdet_custom.models.utils.tta_merge import merge_aug_detections

# class 0: A and B overlap (IoU 90/110 = 0.818), C stands alone; class 1: D sits on A but is another class
BOXES = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [20., 20., 30., 30.], [0., 0., 10., 10.]])
SCORES = torch.tensor([0.9, 0.6, 0.8, 0.5])
LABELS = torch.tensor([0, 0, 0, 1])


def test_nms_keeps_the_best_of_each_overlapping_group_per_class():
    boxes, scores, labels = merge_aug_detections(BOXES, SCORES, LABELS, 2, dict(rule='nms', iou_threshold=0.6), 10)
    assert torch.equal(boxes, BOXES[[0, 2, 3]]) and torch.allclose(scores, torch.tensor([0.9, 0.8, 0.5]))
    assert labels.tolist() == [0, 0, 1]
    # above the pair's IoU nothing is suppressed; max_per_img cuts the lowest
    boxes, scores, labels = merge_aug_detections(BOXES, SCORES, LABELS, 2, dict(rule='nms', iou_threshold=0.9), 3)
    assert torch.allclose(scores, torch.tensor([0.9, 0.8, 0.6])) and labels.tolist() == [0, 0, 0]


def test_wbf_averages_groups_by_score_and_discounts_boxes_seen_in_fewer_views():
    boxes, scores, labels = merge_aug_detections(BOXES, SCORES, LABELS, 2, dict(rule='wbf', iou_threshold=0.55), 10)
    fused = (0.9 * BOXES[0] + 0.6 * BOXES[1]) / 1.5   # [0.4, 0, 10.4, 10]
    assert torch.allclose(boxes, torch.stack([fused, BOXES[2], BOXES[3]]))
    # (0.9 + 0.6) / 2 * 2/2; 0.8 * 1/2; 0.5 * 1/2
    assert torch.allclose(scores, torch.tensor([0.75, 0.4, 0.25])) and labels.tolist() == [0, 0, 1]
    assert torch.allclose(boxes[0], torch.tensor([0.4, 0.0, 10.4, 10.0]))


def test_defaults_and_bad_type():
    boxes, _, _ = merge_aug_detections(BOXES, SCORES, LABELS, 2, None, 10)  # NMS at 0.6
    assert len(boxes) == 3
    with pytest.raises(ValueError, match="tta_merge rule 'mean' is not one of nms, wbf"):
        merge_aug_detections(BOXES, SCORES, LABELS, 2, dict(rule='mean'), 10)
    for kind in ('nms', 'wbf'):
        empty = merge_aug_detections(BOXES[:0], SCORES[:0], LABELS[:0], 2, dict(rule=kind), 10)
        assert [tuple(t.shape) for t in empty] == [(0, 4), (0,), (0,)]
