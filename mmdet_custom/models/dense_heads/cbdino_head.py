"""DINO head for composite-backbone (CB-InternImage) detectors: one forward over both backbones' features, a loss
per backbone copy, the first copy's losses down-weighted (``cb_first_weight``)."""
from __future__ import annotations

from mmdet.models.builder import HEADS
from torch import Tensor

from .dino_head import DINOHead


def rename_cb_losses(losses: dict, idx: int, weight: float = 1) -> dict:
    """Append the copy index to every key (``loss_cls`` -> ``loss_cls0``), mark down-weighted losses with
    ``_w{weight}`` (``loss_cls0_w0.5``) and scale their values; same key names as upstream's checkpoints' logs."""
    renamed = dict()
    for key, value in losses.items():
        new_key = f'{key}{idx}'
        if weight != 1 and 'loss' in key:
            new_key = f'{new_key}_w{weight}'
        if isinstance(value, (list, tuple)):
            renamed[new_key] = [v * weight for v in value]
        else:
            renamed[new_key] = value * weight
    return renamed


@HEADS.register_module()
class CBDINOHead(DINOHead):
    """Same layers, init and forward as :class:`DINOHead`; training expects the batch doubled by ``CBDINO``
    (first half: features of backbone copy 0, second half: copy 1, same images and GTs in both halves).

    Test-time augmentation is :meth:`DINOHead.aug_test` (at test time the neck passes only the assisted copy's
    features). Upstream's ``tta_test_bboxes`` (never called there) is not kept.

    Upstream slices the doubled batch as [0:1] / [1:2], which is only right with one image per GPU; this version
    slices [0:B] / [B:2B], identical for B = 1 and correct for larger batches.
    """

    def __init__(self, cb_first_weight: float = 0.5, *args, dn_cfg: dict | None = None, **kwargs) -> None:
        super().__init__(*args, dn_cfg=dn_cfg, **kwargs)
        self.cb_first_weight = cb_first_weight

    def forward_train(self, x: list[Tensor], img_metas: list[dict], gt_bboxes: list[Tensor],
                      gt_labels: list[Tensor] | None = None, gt_bboxes_ignore: list[Tensor] | None = None,
                      proposal_cfg: dict | None = None, **kwargs) -> dict[str, Tensor]:
        assert proposal_cfg is None, '"proposal_cfg" must be None'
        if len(img_metas) % 2:
            raise ValueError('CBDINOHead.forward_train expects the batch doubled by CBDINO (even length)')
        if self.dn_generator is None:
            raise ValueError(f'{type(self).__name__} needs dn_cfg for training')
        dn_label_query, dn_bbox_query, attn_mask, dn_meta = self.dn_generator(
            gt_bboxes, gt_labels, self.label_embedding, img_metas)
        all_cls, all_boxes, topk_score, topk_anchor = self(x, img_metas, dn_label_query, dn_bbox_query, attn_mask)
        half = len(img_metas) // 2
        losses = dict()
        for idx, weight in enumerate([self.cb_first_weight, 1]):
            part = slice(idx * half, (idx + 1) * half)
            ignore = None if gt_bboxes_ignore is None else gt_bboxes_ignore[part]
            loss = self.loss(all_cls[:, part], all_boxes[:, part], topk_score[part], topk_anchor[part],
                             gt_bboxes[part], gt_labels[part], img_metas[part], dn_meta, gt_bboxes_ignore=ignore)
            losses.update(rename_cb_losses(loss, idx, weight))
        return losses
