"""Merging the detections of several test-time-augmentation views of one image (DETR-style heads, whose queries do
not correspond across views): ``nms`` (class-wise NMS over the union) or ``wbf`` (weighted boxes fusion).

Both take the views' detections already mapped back to the original image and return at most ``max_per_img``
detections, highest score first.
"""
from __future__ import annotations

import torch
from mmcv.ops import batched_nms
from torch import Tensor

MERGE_RULES = ('nms', 'wbf')
DEFAULT_MERGE = dict(rule='nms', iou_threshold=0.6)


def merge_aug_detections(boxes: Tensor, scores: Tensor, labels: Tensor, num_views: int, merge_cfg: dict | None,
                         max_per_img: int) -> tuple[Tensor, Tensor, Tensor]:
    """(boxes (n, 4), scores (n,), labels (n,)) of the merged detections.

    ``merge_cfg``: ``dict(rule='nms', iou_threshold=0.6)`` keeps, per class, the best-scoring box of every group
    overlapping above the threshold; ``dict(rule='wbf', iou_threshold=0.55)`` fuses such a group into its
    score-weighted mean box, scored by the members' mean score times ``min(members, num_views) / num_views`` (an
    object seen in one view of six counts less than one seen in all), as weighted boxes fusion (Solovyev et al.,
    2021) does.
    """
    cfg = dict(merge_cfg or DEFAULT_MERGE)
    kind = cfg.pop('rule', 'nms')
    if kind not in MERGE_RULES:
        raise ValueError(f'tta_merge rule {kind!r} is not one of {", ".join(MERGE_RULES)}')
    if len(boxes) == 0:  # mmcv's batched_nms needs a box to offset the classes by
        return boxes.reshape(0, 4), scores, labels
    if kind == 'nms':
        dets, keep = batched_nms(boxes, scores, labels, dict(type='nms', **cfg))  # sorted, highest first
        return dets[:max_per_img, :4], dets[:max_per_img, 4], labels[keep[:max_per_img]]
    boxes, scores, labels = weighted_boxes_fusion(boxes, scores, labels, num_views, cfg.get('iou_threshold', 0.55))
    order = scores.argsort(descending=True)[:max_per_img]
    return boxes[order], scores[order], labels[order]


def _iou(box: Tensor, others: Tensor) -> Tensor:
    lt = torch.maximum(box[:2], others[:, :2])
    rb = torch.minimum(box[2:], others[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(dim=1)
    return inter / (area + areas - inter).clamp(min=1e-6)


def weighted_boxes_fusion(boxes: Tensor, scores: Tensor, labels: Tensor, num_views: int,
                          iou_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per class, in descending score order: a box joins the fused box it overlaps most (IoU > ``iou_threshold``),
    or starts a new one; fused box = score-weighted mean of its members."""
    out_boxes, out_scores, out_labels = [], [], []
    for label in labels.unique():
        index = (labels == label).nonzero(as_tuple=True)[0]
        index = index[scores[index].argsort(descending=True)]
        fused: list[Tensor] = []          # current fused boxes
        members: list[list[int]] = []     # indices of their members
        for i in index.tolist():
            if fused:
                iou = _iou(boxes[i], torch.stack(fused))
                best = int(iou.argmax())
                if iou[best] > iou_threshold:
                    members[best].append(i)
                    weights = scores[members[best]]
                    fused[best] = (boxes[members[best]] * weights[:, None]).sum(0) / weights.sum()
                    continue
            fused.append(boxes[i].clone())
            members.append([i])
        for box, group in zip(fused, members):
            out_boxes.append(box)
            out_scores.append(scores[group].mean() * min(len(group), num_views) / num_views)
            out_labels.append(label)
    if not out_boxes:
        return boxes.new_zeros((0, 4)), scores.new_zeros((0,)), labels.new_zeros((0,))
    return torch.stack(out_boxes), torch.stack(out_scores), torch.stack(out_labels)
