"""CustomLayerDecayOptimizerConstructor on FlashInternImage detectors: the original FlashInternImage constructor's one
extra rule -- DCNv4's ``offset_mask`` projections (not ``offset_mask_dw``) get ``offset_lr_scale`` -- on the
Mask R-CNN-B 3x and Cascade-L 3x configs (rate 0.9, offset_lr_scale 0.01), values worked out by hand."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmcv.runner import build_optimizer
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def groups_by_name(cfg: Config) -> tuple[dict[str, dict], torch.nn.Module]:
    with torch.device('meta'):
        model = build_detector(cfg.model)
    optimizer = build_optimizer(model, cfg.optimizer)
    out = {}
    for group in optimizer.param_groups:
        for name in group['param_names']:
            assert name not in out
            out[name] = group
    return out, model


# Mask R-CNN FlashInternImage-B 3x: depths 4, 4, 21, 4 -> num_layers 33, Lmax 35, scale = 0.9 ** (34 - id)
B_SAMPLE = [
    # (name, layer id, offset group?, weight decay)
    ('backbone.patch_embed.conv1.weight', 0, False, 0.05),
    ('backbone.levels.0.blocks.0.dcn.offset_mask.weight', 1, True, 0.05),
    ('backbone.levels.0.blocks.0.dcn.offset_mask.bias', 1, True, 0.0),
    ('backbone.levels.0.blocks.0.dcn.offset_mask_dw.weight', 1, False, 0.05),  # the dw conv: no offset scale
    ('backbone.levels.0.blocks.0.dcn.value_proj.weight', 1, False, 0.05),
    ('backbone.levels.1.blocks.2.dcn.offset_mask.weight', 1 + 4 + 2, True, 0.05),
    ('backbone.levels.2.blocks.20.dcn.offset_mask.weight', 1 + 8 + 20, True, 0.05),
    ('backbone.levels.2.downsample.conv.weight', 1 + 29, False, 0.05),
    ('backbone.levels.3.blocks.3.dcn.offset_mask.bias', 1 + 29 + 3, True, 0.0),
    ('neck.lateral_convs.0.ln.weight', 34, False, 0.0),
    ('neck.fpn_convs.2.conv.weight', 34, False, 0.05),
]


@pytest.fixture(scope='module')
def mask_rcnn_b_3x():
    return groups_by_name(Config.fromfile(str(REPO / 'configs/coco/mask_rcnn_flash_intern_image_b_fpn_3x_coco.py')))


@pytest.mark.parametrize('name, layer_id, offset, weight_decay', B_SAMPLE)
def test_mask_rcnn_b_3x(mask_rcnn_b_3x, name, layer_id, offset, weight_decay):
    groups, _ = mask_rcnn_b_3x
    group = groups[name]
    scale = 0.9 ** (34 - layer_id) * (0.01 if offset else 1.0)
    suffix = '_offset_lr_scale' if offset else ''
    assert group['group_name'] == f'layer_{layer_id}_{"decay" if weight_decay else "no_decay"}{suffix}'
    assert group['lr_scale'] == pytest.approx(scale, rel=1e-12)
    assert group['lr'] == pytest.approx(scale * 2e-4, rel=1e-12)
    assert group['weight_decay'] == weight_decay


def test_every_offset_mask_and_only_those_is_scaled(mask_rcnn_b_3x):
    groups, model = mask_rcnn_b_3x
    scaled = {name for name, group in groups.items() if group['group_name'].endswith('_offset_lr_scale')}
    offset_masks = {name for name, _ in model.named_parameters() if '.dcn.offset_mask.' in name}
    assert scaled == offset_masks and len(offset_masks) == 2 * 33


def test_cascade_l_3x_stem_and_offsets():
    cfg = Config.fromfile(str(REPO / 'configs/coco/cascade_flash_intern_image_l_fpn_3x_coco.py'))
    groups, _ = groups_by_name(cfg)
    # depths 5, 5, 22, 5: num_layers 37, Lmax 39
    assert groups['backbone.patch_embed.conv1.weight']['lr_scale'] == pytest.approx(0.9 ** 38)
    assert groups['backbone.levels.3.blocks.4.dcn.offset_mask.weight']['lr_scale'] == pytest.approx(
        0.9 ** (38 - 37) * 0.01)
    assert groups['backbone.levels.3.blocks.4.dcn.output_proj.bias']['lr_scale'] == pytest.approx(0.9 ** 1)
    assert groups['roi_head.bbox_head.0.fc_cls.weight']['lr_scale'] == 1.0
