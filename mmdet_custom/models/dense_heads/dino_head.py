"""DINO head (arXiv:2203.03605) on top of mmdet 2.28's ``DeformableDETRHead``.

Why a subclass instead of upstream's force-registered ``DETRHead``/``DeformableDETRHead`` replacements: upstream
replaces mmdet's classes mainly to drop the asserts that the loss weights equal the matcher cost weights (the DINO
configs use FocalLoss weight 1.0 with FocalLossCost 2.0). The checkpoint keys are the same either way, so here the
head builds its matcher itself and mmdet's stock classes stay untouched for everyone else.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from mmcv.cnn import bias_init_with_prob, constant_init
from mmcv.runner import force_fp32
from mmdet.core import (
    bbox_cxcywh_to_xyxy,
    bbox_mapping_back,
    bbox_xyxy_to_cxcywh,
    build_assigner,
    build_sampler,
    multi_apply,
    reduce_mean,
)
from mmdet.models.builder import HEADS
from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.models.utils.transformer import inverse_sigmoid
from torch import Tensor, nn

from ..utils.query_denoising import build_dn_generator
from ..utils.tta_merge import merge_aug_detections


@HEADS.register_module()
class DINOHead(DeformableDETRHead):
    """DINO head: two-stage deformable DETR head with box refinement, a label embedding for the denoising queries,
    and the losses of DINO (encoder top-k, every decoder layer, denoising part).

    Args:
        dn_cfg: config of the query generator, e.g. ``dict(type='CdnQueryGenerator', noise_scale=dict(label=0.5,
            box=1.0), group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100))``; ``num_classes``,
            ``num_queries`` and ``hidden_dim`` are filled in from the head.
        use_2fc_cls_branch: classification branches as Linear-LN-GELU-Linear (hidden 384) instead of one Linear.
        Other arguments: see mmdet's ``DeformableDETRHead`` / ``DETRHead``.
    """

    def __init__(self, *args, dn_cfg: dict | None = None, use_2fc_cls_branch: bool = False, **kwargs) -> None:
        self.use_2fc_cls_branch = use_2fc_cls_branch
        # The parent asserts loss weight == matcher cost weight when it gets a train_cfg: build the matcher here.
        train_cfg = kwargs.pop('train_cfg', None)
        super().__init__(*args, train_cfg=None, **kwargs)
        if not (self.as_two_stage and self.with_box_refine):
            raise ValueError(f'{type(self).__name__} needs as_two_stage=True and with_box_refine=True')
        if self.transformer.two_stage_num_proposals != self.num_query:  # the dn attention mask is sized by num_query
            raise ValueError(f'bbox_head.num_query ({self.num_query}) must equal '
                             f'transformer.two_stage_num_proposals ({self.transformer.two_stage_num_proposals})')
        if train_cfg:
            if 'assigner' not in train_cfg:
                raise ValueError(f'{type(self).__name__}: train_cfg needs an "assigner" (e.g. HungarianAssigner)')
            self.assigner = build_assigner(train_cfg['assigner'])
            self.sampler = build_sampler(dict(type='PseudoSampler'), context=self)
        self.train_cfg = train_cfg
        self.init_denoising(dn_cfg)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.use_2fc_cls_branch:
            cls_branch = nn.Sequential(nn.Linear(self.embed_dims, 384), nn.LayerNorm(384), nn.GELU(),
                                       nn.Linear(384, self.cls_out_channels))
            self.cls_branches = nn.ModuleList([copy.deepcopy(cls_branch) for _ in self.cls_branches])
        self.label_embedding = nn.Embedding(self.cls_out_channels, self.embed_dims)

    def init_denoising(self, dn_cfg: dict | None) -> None:
        if dn_cfg is not None:
            dn_cfg = dict(dn_cfg, num_classes=self.num_classes, num_queries=self.num_query, hidden_dim=self.embed_dims)
        self.dn_generator = build_dn_generator(dn_cfg)

    def init_weights(self) -> None:
        self.transformer.init_weights()
        if self.loss_cls.use_sigmoid and not self.use_2fc_cls_branch:
            bias_init = bias_init_with_prob(0.01)
            for m in self.cls_branches:
                nn.init.constant_(m.bias, bias_init)
        # Every box branch's last layer starts at zero (weight and bias). Upstream inherits Deformable DETR's init,
        # which first sets reg_branches[0]'s w/h bias to -2 and then, for two-stage heads, resets all of them to 0;
        # DINO is always two-stage, so zero is what the released models were trained from (the encoder proposals
        # already carry the size prior). The dead -2 step is left out.
        for m in self.reg_branches:
            constant_init(m[-1], 0, bias=0)

    # ------------------------------------------------------------------------------------------------- forward
    def forward(self, mlvl_feats: list[Tensor], img_metas: list[dict], dn_label_query: Tensor | None = None,
                dn_bbox_query: Tensor | None = None, attn_mask: Tensor | None = None) -> tuple[Tensor, ...]:
        """Returns (all_cls (L, B, Q, C), all_boxes (L, B, Q, 4) normalised cxcywh, topk_score (B, K, C),
        topk_anchor (B, K, 4)); Q = dn pad size + K in training, K at test."""
        mlvl_masks = self.level_padding_masks(mlvl_feats, img_metas)
        mlvl_positional_encodings = [self.positional_encoding(mask) for mask in mlvl_masks]
        hs, inter_references, topk_score, topk_anchor = self.transformer(
            mlvl_feats, mlvl_masks, None, mlvl_positional_encodings,
            dn_label_query, dn_bbox_query, attn_mask=attn_mask,
            reg_branches=self.reg_branches, cls_branches=self.cls_branches)
        hs = hs.permute(0, 2, 1, 3)
        if dn_label_query is not None and dn_label_query.size(1) == 0:
            # no GT in the batch: keep label_embedding in the graph (DDP wants every parameter used)
            hs = torch.cat([hs[:1] + self.label_embedding.weight[0, 0] * 0.0, hs[1:]], dim=0)

        outputs_classes, outputs_coords = [], []
        for lvl in range(hs.shape[0]):
            reference = inverse_sigmoid(inter_references[lvl], eps=1e-3)
            outputs_classes.append(self.cls_branches[lvl](hs[lvl]))
            outputs_coords.append((self.reg_branches[lvl](hs[lvl]) + reference).sigmoid())
        return torch.stack(outputs_classes), torch.stack(outputs_coords), topk_score, topk_anchor

    @staticmethod
    def level_padding_masks(mlvl_feats: list[Tensor], img_metas: list[dict]) -> list[Tensor]:
        """Per level, (B, h, w) bool: True on the padding the batch added around each image (``img_shape`` inside
        ``batch_input_shape``). A method of its own so that export (where the input is the image, unpadded) can
        replace it."""
        batch_size = mlvl_feats[0].size(0)
        # mmdet's forward_test sets batch_input_shape; callers that skip it (mmdeploy's PyTorch runs) have pad_shape
        input_img_h, input_img_w = img_metas[0].get('batch_input_shape') or img_metas[0]['pad_shape'][:2]
        img_masks = mlvl_feats[0].new_ones((batch_size, input_img_h, input_img_w))
        for img_id in range(batch_size):
            img_h, img_w = img_metas[img_id]['img_shape'][:2]
            img_masks[img_id, :img_h, :img_w] = 0
        return [F.interpolate(img_masks[None], size=feat.shape[-2:]).to(torch.bool).squeeze(0) for feat in mlvl_feats]

    def forward_train(self, x: list[Tensor], img_metas: list[dict], gt_bboxes: list[Tensor],
                      gt_labels: list[Tensor] | None = None, gt_bboxes_ignore: list[Tensor] | None = None,
                      proposal_cfg: dict | None = None, **kwargs) -> dict[str, Tensor]:
        assert proposal_cfg is None, '"proposal_cfg" must be None'
        if self.dn_generator is None:
            raise ValueError(f'{type(self).__name__} needs dn_cfg for training')
        dn_label_query, dn_bbox_query, attn_mask, dn_meta = self.dn_generator(
            gt_bboxes, gt_labels, self.label_embedding, img_metas)
        outs = self(x, img_metas, dn_label_query, dn_bbox_query, attn_mask)
        return self.loss(*outs, gt_bboxes, gt_labels, img_metas, dn_meta, gt_bboxes_ignore=gt_bboxes_ignore)

    # ---------------------------------------------------------------------------------------- test-time augmentation
    def aug_test(self, feats: list[list[Tensor]], img_metas: list[list[dict]],
                 rescale: bool = False) -> list[tuple[Tensor, Tensor]]:
        """Test-time augmentation (called by mmdet's ``SingleStageDetector.aug_test``, one image per batch).

        The merge rule: every augmentation's detections as ``simple_test`` gives them (the ``max_per_img`` best
        query x class scores of the last decoder layer), mapped back to the original image (flip undone, then
        divided by the augmentation's scale factor); their union is merged by ``test_cfg.tta_merge``
        (:func:`~mmdet_custom.models.utils.tta_merge.merge_aug_detections`; default class-wise NMS,
        ``dict(rule='nms', iou_threshold=0.6)``; ``dict(rule='wbf', iou_threshold=0.55)`` for weighted boxes
        fusion) and the ``max_per_img`` best remain. DETR queries have no correspondence across augmentations, so
        boxes cannot be averaged query by query. A single augmentation is returned unmerged, so one scale without
        flip gives exactly ``simple_test``'s detections.

        Returns ``[(det_bboxes (n, 5), det_labels (n,))]``: in the original image's pixels with ``rescale``,
        else in the first augmentation's.
        """
        if any(len(metas) != 1 for metas in img_metas):
            raise ValueError(f'{type(self).__name__}.aug_test takes one image per augmentation batch')
        boxes, scores, labels = [], [], []
        for x, metas in zip(feats, img_metas):
            (det_bboxes, det_labels), = self.simple_test_bboxes(x, metas, rescale=False)
            meta = metas[0]
            boxes.append(bbox_mapping_back(det_bboxes[:, :4], meta['img_shape'], meta['scale_factor'],
                                           meta.get('flip', False), meta.get('flip_direction', 'horizontal')))
            scores.append(det_bboxes[:, 4])
            labels.append(det_labels)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        if len(feats) > 1:
            boxes, scores, labels = merge_aug_detections(boxes, scores, labels, len(feats),
                                                         self.test_cfg.get('tta_merge'),
                                                         self.test_cfg.get('max_per_img', self.num_query))
        if not rescale:  # as mmdet's aug tests: the first augmentation's scale
            boxes = boxes * boxes.new_tensor(img_metas[0][0]['scale_factor'])
        return [(torch.cat([boxes, scores[:, None]], dim=-1), labels)]

    # ---------------------------------------------------------------------------------------------------- loss
    @staticmethod
    def extract_dn_outputs(all_cls_scores: Tensor, all_bbox_preds: Tensor, dn_meta: dict | None) -> tuple:
        """Split the query axis into (matching cls, matching boxes, dn cls, dn boxes)."""
        if dn_meta is None:
            return all_cls_scores, all_bbox_preds, None, None
        pad_size = dn_meta['pad_size']
        return (all_cls_scores[:, :, pad_size:], all_bbox_preds[:, :, pad_size:],
                all_cls_scores[:, :, :pad_size], all_bbox_preds[:, :, :pad_size])

    @force_fp32(apply_to=('all_cls_scores', 'all_bbox_preds'))
    def loss(self, all_cls_scores: Tensor, all_bbox_preds: Tensor, enc_topk_scores: Tensor | None,
             enc_topk_anchors: Tensor | None, gt_bboxes_list: list[Tensor], gt_labels_list: list[Tensor],
             img_metas: list[dict], dn_meta: dict | None = None,
             gt_bboxes_ignore: list[Tensor] | None = None) -> dict[str, Tensor]:
        """Hungarian losses of the encoder top-k (``interm_*``, multi-class) and of every decoder layer
        (``loss_*``, ``d{i}.loss_*``), plus the denoising losses (``dn_loss_*``, ``d{i}.dn_loss_*``)."""
        assert gt_bboxes_ignore is None, f'{type(self).__name__} does not support gt_bboxes_ignore'
        loss_dict = dict()
        all_cls_scores, all_bbox_preds, dn_cls_scores, dn_bbox_preds = self.extract_dn_outputs(
            all_cls_scores, all_bbox_preds, dn_meta)

        if enc_topk_scores is not None:
            enc_loss_cls, enc_loss_bbox, enc_loss_iou = self.loss_single(
                enc_topk_scores, enc_topk_anchors, gt_bboxes_list, gt_labels_list, img_metas)
            loss_dict['interm_loss_cls'] = enc_loss_cls
            loss_dict['interm_loss_bbox'] = enc_loss_bbox
            loss_dict['interm_loss_iou'] = enc_loss_iou

        num_layers = len(all_cls_scores)
        losses_cls, losses_bbox, losses_iou = multi_apply(
            self.loss_single, all_cls_scores, all_bbox_preds, [gt_bboxes_list] * num_layers,
            [gt_labels_list] * num_layers, [img_metas] * num_layers)
        self._add_layer_losses(loss_dict, '', losses_cls, losses_bbox, losses_iou)

        if dn_cls_scores is not None:
            dn_losses_cls, dn_losses_bbox, dn_losses_iou = multi_apply(
                self.loss_dn_single, dn_cls_scores, dn_bbox_preds, [gt_bboxes_list] * num_layers,
                [gt_labels_list] * num_layers, [img_metas] * num_layers, [dn_meta] * num_layers)
            self._add_layer_losses(loss_dict, 'dn_', dn_losses_cls, dn_losses_bbox, dn_losses_iou)
        # upstream returned None here when dn_meta was missing; always return the dict
        return loss_dict

    @staticmethod
    def _add_layer_losses(loss_dict: dict, prefix: str, losses_cls, losses_bbox, losses_iou) -> None:
        loss_dict[f'{prefix}loss_cls'] = losses_cls[-1]
        loss_dict[f'{prefix}loss_bbox'] = losses_bbox[-1]
        loss_dict[f'{prefix}loss_iou'] = losses_iou[-1]
        for i, (loss_cls, loss_bbox, loss_iou) in enumerate(zip(losses_cls[:-1], losses_bbox[:-1], losses_iou[:-1])):
            loss_dict[f'd{i}.{prefix}loss_cls'] = loss_cls
            loss_dict[f'd{i}.{prefix}loss_bbox'] = loss_bbox
            loss_dict[f'd{i}.{prefix}loss_iou'] = loss_iou

    def loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor, gt_bboxes_list: list[Tensor],
                       gt_labels_list: list[Tensor], img_metas: list[dict], dn_meta: dict) -> tuple:
        """Denoising losses of one decoder layer: the targets are known (no matching)."""
        num_imgs = dn_cls_scores.size(0)
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos,
         num_total_neg) = self.get_dn_targets([dn_bbox_preds[i] for i in range(num_imgs)], gt_bboxes_list,
                                              gt_labels_list, img_metas, dn_meta)
        labels = torch.cat(labels_list, 0)
        label_weights = torch.cat(label_weights_list, 0)
        bbox_targets = torch.cat(bbox_targets_list, 0)
        bbox_weights = torch.cat(bbox_weights_list, 0)

        cls_scores = dn_cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        if len(cls_scores) > 0:
            loss_cls = self.loss_cls(cls_scores, labels, label_weights, avg_factor=cls_avg_factor)
        else:
            loss_cls = cls_scores.sum() * 0.0  # zero, but stays in the graph
        num_total_pos = torch.clamp(reduce_mean(loss_cls.new_tensor([num_total_pos])), min=1).item()

        factors = torch.cat([
            pred.new_tensor([img_w, img_h, img_w, img_h])[None].repeat(pred.size(0), 1)
            for pred, (img_h, img_w, _) in zip(dn_bbox_preds, (m['img_shape'] for m in img_metas))], 0)
        bbox_preds = dn_bbox_preds.reshape(-1, 4)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights, avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    def get_dn_targets(self, dn_bbox_preds_list: list[Tensor], gt_bboxes_list: list[Tensor],
                       gt_labels_list: list[Tensor], img_metas: list[dict], dn_meta: dict) -> tuple:
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, pos_inds_list,
         neg_inds_list) = multi_apply(self._get_dn_target_single, dn_bbox_preds_list, gt_bboxes_list,
                                      gt_labels_list, img_metas, [dn_meta] * len(img_metas))
        num_total_pos = sum(inds.numel() for inds in pos_inds_list)
        num_total_neg = sum(inds.numel() for inds in neg_inds_list)
        return labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos, num_total_neg

    def _get_dn_target_single(self, dn_bbox_pred: Tensor, gt_bboxes: Tensor, gt_labels: Tensor, img_meta: dict,
                              dn_meta: dict) -> tuple:
        """Positive copy of GT t in group g sits at g * group_size + t; its negative copy group_size / 2 later.

        Every denoising slot (negatives and empty padding slots too) gets label weight 1 with the background label
        unless it is a positive, as upstream trains it; boxes are supervised on positives only.
        """
        num_groups = dn_meta['num_dn_group']
        pad_size = dn_meta['pad_size']
        assert pad_size % num_groups == 0
        group_size = pad_size // num_groups
        device = dn_bbox_pred.device
        num_gts = len(gt_labels)
        gt_index = torch.arange(num_gts, dtype=torch.long, device=device)[None].repeat(num_groups, 1)
        pos_inds = (torch.arange(num_groups, dtype=torch.long, device=device)[:, None] * group_size + gt_index)
        pos_inds, pos_assigned_gt_inds = pos_inds.flatten(), gt_index.flatten()
        neg_inds = pos_inds + group_size // 2

        num_queries = dn_bbox_pred.size(0)
        labels = gt_bboxes.new_full((num_queries,), self.num_classes, dtype=torch.long)
        labels[pos_inds] = gt_labels[pos_assigned_gt_inds].long()
        label_weights = gt_bboxes.new_ones(num_queries)
        bbox_targets = torch.zeros_like(dn_bbox_pred)
        bbox_weights = torch.zeros_like(dn_bbox_pred)
        bbox_weights[pos_inds] = 1.0
        img_h, img_w, _ = img_meta['img_shape']
        factor = dn_bbox_pred.new_tensor([img_w, img_h, img_w, img_h])[None]
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(gt_bboxes / factor).repeat(num_groups, 1)
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds
