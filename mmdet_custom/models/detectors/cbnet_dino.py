"""DINO with a composite backbone (CB-InternImage): both backbone copies are supervised in training."""
from __future__ import annotations

import torch
from mmdet.models.builder import DETECTORS
from torch import Tensor

from .dino import DINO


def _in_backbone_level(name: str, levels: tuple[int, ...]) -> bool:
    return any(f'.levels.{i}.' in name for i in levels)


# Optional parameter freezing by name (upstream's rule names; no shipped config uses one).
FREEZE_RULES = {
    'freeze_backbone': lambda n: n.startswith('backbone.'),
    'freeze_backbone_neck': lambda n: n.startswith(('backbone.', 'neck.')),
    'freeze_backbone_encoder': lambda n: n.startswith(('backbone.', 'bbox_head.transformer.encoder.')),
    'freeze_backbone_expect_level_4': lambda n: n.startswith('backbone.') and not _in_backbone_level(n, (3,)),
    'freeze_backbone_expect_level_3_4': lambda n: n.startswith('backbone.') and not _in_backbone_level(n, (2, 3)),
    'freeze_backbone_expect_0_level_1_2_3':
        lambda n: n.startswith('backbone.') and not _in_backbone_level(n, (1, 2, 3)),
    'freeze_cb_first_backbone': lambda n: n.startswith('backbone.cb_modules.0.'),
    'freeze_cb_first_backbone_expect_level_4':
        lambda n: n.startswith('backbone.cb_modules.0.') and not _in_backbone_level(n, (3,)),
    'freeze_stage_1': lambda n: n.startswith('backbone.') and ('patch_embed' in n or _in_backbone_level(n, (0,))),
    'freeze_stage_1_2':
        lambda n: n.startswith('backbone.') and ('patch_embed' in n or _in_backbone_level(n, (0, 1))),
}


@DETECTORS.register_module()
class CBDINO(DINO):
    """Backbone ``CBInternImage`` (two feature tuples) -> ``CBChannelMapper`` -> ``CBDINOHead``.

    Training concatenates the two copies' features along the batch axis (copy 0 first) and doubles the image
    metas and GTs; the head computes a loss per copy. At test time the neck keeps only the assisted copy.

    Args:
        rule: optional name from :data:`FREEZE_RULES` to freeze parameters by name.
    """

    def __init__(self, *args, rule: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if rule is not None:
            if rule not in FREEZE_RULES:
                raise ValueError(f'CBDINO: unknown rule {rule!r}; valid: {sorted(FREEZE_RULES)}')
            for name, param in self.named_parameters():
                if FREEZE_RULES[rule](name):
                    param.requires_grad_(False)
        self.rule = rule

    def forward_train(self, img: Tensor, img_metas: list[dict], gt_bboxes: list[Tensor], gt_labels: list[Tensor],
                      gt_bboxes_ignore: list[Tensor] | None = None) -> dict[str, Tensor]:
        batch_input_shape = tuple(img[0].size()[-2:])
        for img_meta in img_metas:
            img_meta['batch_input_shape'] = batch_input_shape
        feats = self.extract_feat(img)
        if not isinstance(feats[0], (list, tuple)):  # plain backbone: behave like DINO
            return self.bbox_head.forward_train(feats, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore)
        if len(feats) != 2:
            raise ValueError(f'CBDINO expects features of 2 backbone copies, got {len(feats)}')
        x = [torch.cat([first, second]) for first, second in zip(*feats)]
        ignore = None if gt_bboxes_ignore is None else gt_bboxes_ignore * 2
        return self.bbox_head.forward_train(x, img_metas * 2, gt_bboxes * 2, gt_labels * 2, ignore)
