"""Contrastive query denoising (DINO, arXiv:2203.03605, sec. 3.3) for DETR-style heads.

In training, every ground-truth box is turned into ``2 * num_groups`` noised copies: a *positive* copy (small box
noise, to be reconstructed into its GT) and a *negative* copy (larger noise, to be classified as background). These
denoising queries are prepended to the matching queries; an attention mask keeps the matching part from seeing the
denoising part (it would leak the answer) and keeps the groups from seeing each other.

Layout of the ``pad_size = 2 * m * num_groups`` denoising slots of each image (``m`` = the largest GT count in the
batch): block ``i`` (``i = 2g`` positive / ``2g + 1`` negative copy of group ``g``) starts at ``i * m``; the image's
``n_b`` GTs occupy the first ``n_b`` positions of each block, the rest stays zero.

Everything is created on the device of the inputs, so the CPU runs it too.
"""
from __future__ import annotations

import torch
from mmcv.runner import BaseModule
from mmcv.utils import Registry
from mmdet.core import bbox_xyxy_to_cxcywh
from mmdet.models.utils.transformer import inverse_sigmoid
from torch import Tensor, nn


class DnQueryGenerator(BaseModule):
    """Builds the noised label / box queries, the self-attention mask and the ``dn_meta`` for one batch.

    Args:
        num_queries: number of matching queries that follow the denoising ones.
        hidden_dim: query embedding width.
        num_classes: number of object classes (random labels are drawn from ``[0, num_classes)``).
        noise_scale: ``label``: a label is replaced by a random class with probability ``label * 0.5``;
            ``box``: box corners move by up to ``box * (w/2, h/2)`` (positives ``[0, 1)``, negatives ``[1, 2)``).
        group_cfg: ``dynamic=True`` uses ``num_dn_queries // max_gt_count`` groups; ``dynamic=False`` uses
            ``num_groups`` groups.
    """

    def __init__(self,
                 num_queries: int,
                 hidden_dim: int,
                 num_classes: int,
                 noise_scale: dict = dict(label=0.5, box=0.4),
                 group_cfg: dict = dict(dynamic=True, num_groups=None, num_dn_queries=None)) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.label_noise_scale = noise_scale['label']
        self.box_noise_scale = noise_scale['box']
        self.dynamic_dn_groups = group_cfg.get('dynamic', False)
        if self.dynamic_dn_groups:
            key = 'num_dn_queries'
        else:
            key = 'num_groups'
        value = group_cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'dn_cfg.group_cfg.{key} must be an int >= 1 when dynamic={self.dynamic_dn_groups}, '
                             f'got {value!r}')
        self.num_dn_queries = value if self.dynamic_dn_groups else None
        self.num_dn_groups = None if self.dynamic_dn_groups else value

    def get_num_groups(self, max_gt_count: int) -> int:
        """Number of denoising groups for a batch whose largest image has ``max_gt_count`` GTs."""
        if self.dynamic_dn_groups:
            num_groups = 1 if max_gt_count == 0 else self.num_dn_queries // max_gt_count
        else:
            num_groups = self.num_dn_groups
        return max(int(num_groups), 1)

    def forward(self,
                gt_bboxes: list[Tensor],
                gt_labels: list[Tensor],
                label_enc: nn.Embedding,
                img_metas: list[dict]) -> tuple:
        """Return ``(label_query (B, P, C), bbox_query (B, P, 4) logits, attn_mask (P+Q, P+Q) bool, dn_meta)``.

        ``attn_mask`` is True where attention is blocked. In eval mode all four are None.
        """
        if not self.training:
            return None, None, None, None
        assert len(gt_bboxes) == len(gt_labels) == len(img_metas)
        batch_size = len(gt_bboxes)
        device = label_enc.weight.device

        # 1. GT boxes -> normalised cxcywh.
        boxes_per_img = []
        for img_meta, bboxes in zip(img_metas, gt_bboxes):
            img_h, img_w, _ = img_meta['img_shape']
            factor = bboxes.new_tensor([img_w, img_h, img_w, img_h]).unsqueeze(0)
            boxes_per_img.append(bbox_xyxy_to_cxcywh(bboxes) / factor)
        gt_counts = [len(labels) for labels in gt_labels]
        max_gt = max(gt_counts) if gt_counts else 0
        num_groups = self.get_num_groups(max_gt)
        num_blocks = 2 * num_groups
        pad_size = max_gt * num_blocks

        labels = torch.cat(gt_labels).to(device)
        boxes = torch.cat(boxes_per_img).to(device)
        batch_idx = torch.cat([torch.full((n,), i, dtype=torch.long, device=device)
                               for i, n in enumerate(gt_counts)])
        num_gts = len(labels)

        # 2. Replicate: block k (k = 0..2G-1) holds copies of all GTs of the batch; odd blocks are negatives.
        noised_labels = labels.repeat(num_blocks)
        noised_boxes = boxes.repeat(num_blocks, 1)
        is_negative = torch.arange(num_blocks, device=device).repeat_interleave(num_gts) % 2 == 1

        # 3. Label noise: with probability label_scale * 0.5 replace by a uniformly drawn class (may be the same).
        if self.label_noise_scale > 0 and num_gts > 0:
            flip = torch.rand(noised_labels.shape, device=device) < self.label_noise_scale * 0.5
            random_labels = torch.randint_like(noised_labels, 0, self.num_classes)
            noised_labels = torch.where(flip, random_labels, noised_labels)

        # 4. Box noise on the corners: |shift| in [0, 1) (positives) or [1, 2) (negatives) times half the w / h.
        if self.box_noise_scale > 0 and num_gts > 0:
            corners = torch.cat([noised_boxes[:, :2] - noised_boxes[:, 2:] / 2,
                                 noised_boxes[:, :2] + noised_boxes[:, 2:] / 2], dim=1)
            half_wh = (noised_boxes[:, 2:] / 2).repeat(1, 2)
            sign = torch.randint(0, 2, noised_boxes.shape, device=device).to(boxes.dtype) * 2.0 - 1.0
            magnitude = torch.rand_like(noised_boxes) + is_negative[:, None].to(boxes.dtype)
            corners = (corners + sign * magnitude * half_wh * self.box_noise_scale).clamp(min=0.0, max=1.0)
            noised_boxes = torch.cat([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], dim=1)

        label_embeds = label_enc(noised_labels.long())
        box_logits = inverse_sigmoid(noised_boxes, eps=1e-3)

        # 5. Scatter into the padded per-image layout.
        label_query = label_embeds.new_zeros(batch_size, pad_size, self.hidden_dim)
        bbox_query = box_logits.new_zeros(batch_size, pad_size, 4)
        if num_gts > 0:
            index_in_image = torch.cat([torch.arange(n, device=device) for n in gt_counts])
            slots = (index_in_image[None, :] + max_gt * torch.arange(num_blocks, device=device)[:, None]).flatten()
            img_of_slot = batch_idx.repeat(num_blocks)
            label_query[img_of_slot, slots] = label_embeds
            bbox_query[img_of_slot, slots] = box_logits

        attn_mask = self.make_attn_mask(pad_size, num_groups, device)
        dn_meta = dict(pad_size=pad_size, num_dn_group=num_groups)
        return label_query, bbox_query, attn_mask, dn_meta

    def make_attn_mask(self, pad_size: int, num_groups: int, device: torch.device | str = 'cpu') -> Tensor:
        """Boolean (pad_size + num_queries)^2 mask, True = blocked.

        Matching queries cannot see any denoising query; a denoising group (2m rows) cannot see the other groups;
        denoising queries may see the matching queries.
        """
        total = pad_size + self.num_queries
        attn_mask = torch.zeros(total, total, dtype=torch.bool, device=device)
        attn_mask[pad_size:, :pad_size] = True
        group_size = pad_size // num_groups
        for g in range(num_groups):
            rows = slice(g * group_size, (g + 1) * group_size)
            attn_mask[rows, :g * group_size] = True
            attn_mask[rows, (g + 1) * group_size:pad_size] = True
        return attn_mask


class CdnQueryGenerator(DnQueryGenerator):
    """Contrastive denoising generator: same behaviour as :class:`DnQueryGenerator` (upstream's naming)."""


# A registry, not a dict: the entry points' check of config ``type=`` names (mmcv_custom.cli.checks) finds every
# registry of the imported modules, so it knows these names without importing the plugin.
DN_GENERATORS = Registry('dn query generator')
DN_GENERATORS.register_module(module=DnQueryGenerator)
DN_GENERATORS.register_module(module=CdnQueryGenerator)


def build_dn_generator(dn_args: dict | None) -> DnQueryGenerator | None:
    """Build a generator from ``dict(type='CdnQueryGenerator', ...)``; None stays None."""
    if dn_args is None:
        return None
    dn_args = dict(dn_args)
    type_name = dn_args.pop('type', None)
    generator = DN_GENERATORS.get(type_name) if isinstance(type_name, str) else None
    if generator is None:
        raise ValueError(f'dn_cfg.type must be one of {sorted(DN_GENERATORS.module_dict)}, got {type_name!r}')
    return generator(**dn_args)
