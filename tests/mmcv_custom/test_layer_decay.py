"""CustomLayerDecayOptimizerConstructor: upstream's id / lr-scale / weight-decay rule on hand-checked parameters."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmcv.runner import build_optimizer
from torch import nn

import mmdet_custom  # noqa: F401  (registers InternImage and the constructor)
from mmcv_custom.custom_layer_decay_optimizer_constructor import CustomLayerDecayOptimizerConstructor, get_layer_id

REPO = Path(__file__).resolve().parents[2]
MASK_RCNN_T = REPO / 'configs/coco/mask_rcnn_internimage_t_fpn_1x_coco.py'
BASE_LR, WD = 1e-4, 0.05


def _groups_by_param_name(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    out = {}
    for group in optimizer.param_groups:
        for name in group['param_names']:
            assert name not in out, f'{name} is in two groups'
            out[name] = group
    return out


@pytest.fixture(scope='module')
def mask_rcnn_t():
    cfg = Config.fromfile(str(MASK_RCNN_T))
    from mmdet.models import build_detector
    with torch.device('meta'):  # names and shapes are all the rule needs
        model = build_detector(cfg.model)
    return cfg, model


# (name, layer id, weight decay) for InternImage-T (depths 4, 4, 18, 4): ids worked out by hand from the rule in
# docs/deviations.md, layer-wise lr decay (DINO-T worked example: stage norms/downsamples take the next stage's
# first-block id; stage 3's norm 27).
T_SAMPLE = [
    ('backbone.patch_embed.conv1.weight', 0, WD),
    ('backbone.patch_embed.conv1.bias', 0, 0.),
    ('backbone.patch_embed.norm1.1.weight', 0, 0.),
    ('backbone.patch_embed.conv2.weight', 0, WD),
    ('backbone.levels.0.blocks.0.gamma1', 1, 0.),
    ('backbone.levels.0.blocks.0.dcn.offset.weight', 1, WD),   # backbone DCN offsets are ordinary weights
    ('backbone.levels.0.blocks.0.dcn.dw_conv.0.weight', 1, WD),
    ('backbone.levels.0.blocks.0.norm1.0.weight', 1, 0.),
    ('backbone.levels.0.blocks.3.mlp.fc1.weight', 4, WD),
    ('backbone.levels.0.norm.0.weight', 5, 0.),
    ('backbone.levels.0.downsample.conv.weight', 5, WD),
    ('backbone.levels.0.downsample.norm.1.bias', 5, 0.),
    ('backbone.levels.1.blocks.0.dcn.input_proj.weight', 5, WD),
    ('backbone.levels.1.blocks.3.mlp.fc2.bias', 8, 0.),
    ('backbone.levels.1.downsample.conv.weight', 9, WD),
    ('backbone.levels.2.blocks.0.dcn.mask.weight', 9, WD),
    ('backbone.levels.2.blocks.17.dcn.output_proj.weight', 26, WD),
    ('backbone.levels.2.norm.0.weight', 27, 0.),
    ('backbone.levels.2.downsample.conv.weight', 27, WD),
    ('backbone.levels.3.blocks.0.mlp.fc1.weight', 27, WD),
    ('backbone.levels.3.blocks.3.mlp.fc2.weight', 30, WD),
    ('backbone.levels.3.norm.0.bias', 27, 0.),                   # upstream oddity: same id as stage 2's downsample
    ('neck.lateral_convs.0.conv.weight', 31, WD),
    ('neck.fpn_convs.3.conv.bias', 31, 0.),
    ('rpn_head.rpn_conv.weight', 31, WD),
    ('rpn_head.rpn_cls.bias', 31, 0.),
    ('roi_head.bbox_head.shared_fcs.0.weight', 31, WD),
    ('roi_head.bbox_head.fc_reg.weight', 31, WD),
    ('roi_head.mask_head.convs.0.conv.weight', 31, WD),
    ('roi_head.mask_head.conv_logits.bias', 31, 0.),
]


@pytest.mark.parametrize('name, layer_id, weight_decay', T_SAMPLE)
def test_mask_rcnn_t_with_decay_09(mask_rcnn_t, name, layer_id, weight_decay):
    cfg, model = mask_rcnn_t
    optimizer_cfg = cfg.optimizer.copy()
    optimizer_cfg['paramwise_cfg'] = dict(num_layers=30, layer_decay_rate=0.9, depths=[4, 4, 18, 4])
    groups = _groups_by_param_name(build_optimizer(model, optimizer_cfg))
    group = groups[name]
    scale = 0.9 ** (31 - layer_id)  # Lmax - 1 - id, Lmax = 30 + 2
    assert group['group_name'] == f'layer_{layer_id}_{"decay" if weight_decay else "no_decay"}'
    assert group['lr_scale'] == pytest.approx(scale, rel=1e-12)
    assert group['lr'] == pytest.approx(scale * BASE_LR, rel=1e-12)
    assert group['weight_decay'] == weight_decay


def test_worked_example_values(mask_rcnn_t):
    """The scales quoted in docs/deviations.md: stem 0.9^31 = 0.0382, stage-3 norm 0.9^4 = 0.6561, heads 1.0."""
    cfg, model = mask_rcnn_t
    optimizer_cfg = cfg.optimizer.copy()
    optimizer_cfg['paramwise_cfg'] = dict(num_layers=30, layer_decay_rate=0.9, depths=[4, 4, 18, 4])
    groups = _groups_by_param_name(build_optimizer(model, optimizer_cfg))
    assert groups['backbone.patch_embed.conv1.weight']['lr_scale'] == pytest.approx(0.0382, abs=5e-5)
    assert groups['backbone.levels.3.norm.0.weight']['lr_scale'] == pytest.approx(0.6561, abs=1e-9)
    assert groups['roi_head.bbox_head.fc_cls.weight']['lr_scale'] == 1.0


def test_mask_rcnn_t_config_as_shipped(mask_rcnn_t):
    """Rate 1.0 (the Mask R-CNN configs): every lr equals the base lr; only the no-decay rule acts."""
    cfg, model = mask_rcnn_t
    optimizer = build_optimizer(model, cfg.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = _groups_by_param_name(optimizer)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == trainable  # every trainable parameter exactly once
    assert all(g['lr'] == BASE_LR and g['lr_scale'] == 1.0 for g in optimizer.param_groups)
    for name, param in model.named_parameters():
        expected = 0. if (param.ndim == 1 or name.endswith('.bias') or 'norm' in name) else WD
        assert groups[name]['weight_decay'] == expected, name
    # ids 0..31 each with a decay and a no_decay group
    assert len(optimizer.param_groups) == 64


def test_frozen_parameters_are_left_out(mask_rcnn_t):
    cfg, model = mask_rcnn_t
    model.backbone.patch_embed.conv1.weight.requires_grad_(False)
    try:
        groups = _groups_by_param_name(build_optimizer(model, cfg.optimizer))
    finally:
        model.backbone.patch_embed.conv1.weight.requires_grad_(True)
    assert 'backbone.patch_embed.conv1.weight' not in groups
    assert 'backbone.patch_embed.conv1.bias' in groups


class _Named(nn.Module):
    """A module whose parameters carry the given dotted names."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        for name, shape in shapes.items():
            owner = self
            *path, leaf = name.split('.')
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))


def test_odd_ids_and_offset_rules():
    """DINO- and H-specific names: level_embeds -> 0, post_norms.k -> block k's id, CB params -> head id,
    sampling_offsets -> x offset_lr_scale (no decay), reference_points -> x0.1 with dino_head."""
    depths = [6, 6, 32, 6]  # InternImage-H, num_layers 50, Lmax 52
    model = _Named({
        'bbox_head.transformer.level_embeds': (4, 256),
        'backbone.levels.2.post_norms.1.0.weight': (1280,),
        'backbone.cb_modules.0.patch_embed.conv1.weight': (160, 3, 3, 3),
        'backbone.cb_linears.0.1.weight': (320, 640, 1, 1),
        'bbox_head.transformer.encoder.layers.0.attentions.0.sampling_offsets.weight': (256, 256),
        'bbox_head.transformer.decoder.reference_points.weight': (2, 256),
        'bbox_head.cls_branches.0.weight': (80, 256),
    })
    base = dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
    paramwise = dict(num_layers=50, layer_decay_rate=0.94, depths=depths, offset_lr_scale=1e-3)
    groups = _groups_by_param_name(CustomLayerDecayOptimizerConstructor(base, paramwise)(model))
    assert groups['bbox_head.transformer.level_embeds']['lr_scale'] == pytest.approx(0.94 ** 51)
    assert groups['bbox_head.transformer.level_embeds']['weight_decay'] == 1e-4
    post_norm = groups['backbone.levels.2.post_norms.1.0.weight']
    assert post_norm['group_name'] == 'layer_14_no_decay'  # 1 + 1 + 6 + 6
    assert groups['backbone.cb_modules.0.patch_embed.conv1.weight']['group_name'] == 'layer_51_decay'
    assert groups['backbone.cb_linears.0.1.weight']['lr_scale'] == 1.0
    offsets = groups['bbox_head.transformer.encoder.layers.0.attentions.0.sampling_offsets.weight']
    assert offsets['group_name'] == 'layer_51_no_decay_offset_lr_scale'
    assert offsets['lr_scale'] == pytest.approx(1e-3) and offsets['weight_decay'] == 0.
    ref_points = groups['bbox_head.transformer.decoder.reference_points.weight']
    assert ref_points['group_name'] == 'layer_51_decay_offset_lr_scale'
    assert groups['bbox_head.cls_branches.0.weight']['lr_scale'] == 1.0

    dino = CustomLayerDecayOptimizerConstructor(base, {**paramwise, 'dino_head': True, 'backbone_small_lr': True})
    groups = _groups_by_param_name(dino(model))
    assert groups['bbox_head.transformer.decoder.reference_points.weight']['group_name'] == 'layer_51_decay_0.1x'
    assert groups['bbox_head.transformer.decoder.reference_points.weight']['lr_scale'] == pytest.approx(0.1)
    # backbone_small_lr: every scale below 1 gets another x0.1
    assert groups['bbox_head.transformer.level_embeds']['lr_scale'] == pytest.approx(0.1 * 0.94 ** 51)


def test_get_layer_id_generic_depths():
    depths = [2, 3, 4, 5]  # Lmax = 16
    assert get_layer_id('backbone.levels.1.blocks.2.mlp.fc1.weight', 16, depths) == 2 + 1 + 2
    assert get_layer_id('backbone.levels.1.downsample.conv.weight', 16, depths) == 1 + 2 + 3
    assert get_layer_id('backbone.levels.3.norm.0.weight', 16, depths) == 1 + 2 + 3 + 4
    assert get_layer_id('backbone.levels.3.blocks.4.gamma1', 16, depths) == 4 + 1 + 9
    assert get_layer_id('neck.convs.0.conv.weight', 16, depths) == 15


@pytest.mark.parametrize('paramwise, field', [
    (dict(layer_decay_rate=0.9, depths=[1]), 'num_layers'),
    (dict(num_layers=1, depths=[1]), 'layer_decay_rate'),
    (dict(num_layers=1, layer_decay_rate=0.9, depths=[1], layer_decay=0.9), 'layer_decay'),
])
def test_bad_paramwise_cfg_names_the_field(paramwise, field):
    with pytest.raises(KeyError, match=rf'optimizer\.paramwise_cfg\.{field} '):
        CustomLayerDecayOptimizerConstructor(dict(type='AdamW', lr=1e-4, weight_decay=0.05), paramwise)


@pytest.mark.parametrize('config, rate', [('cascade_internimage_l_fpn_1x_coco.py', 0.94),
                                          ('cascade_internimage_l_fpn_3x_coco.py', 0.9)])
def test_cascade_l_configs(config, rate):
    """Layer-decay rule (docs/deviations.md): stem scale 0.94^38 = 0.0952 (1x) / 0.9^38 (3x);
    offset_lr_scale 0.01 (3x) touches nothing."""
    from mmdet.models import build_detector
    cfg = Config.fromfile(str(REPO / 'configs/coco' / config))
    with torch.device('meta'):
        model = build_detector(cfg.model)
    optimizer = build_optimizer(model, cfg.optimizer)
    groups = _groups_by_param_name(optimizer)
    assert groups['backbone.patch_embed.conv1.weight']['lr_scale'] == pytest.approx(rate ** 38)
    if rate == 0.94:
        assert rate ** 38 == pytest.approx(0.0952, abs=5e-5)
    # L depths 5, 5, 22, 5: last block id 37 -> rate^1; stage 2 downsample 1 + 32 = 33 -> rate^5
    assert groups['backbone.levels.3.blocks.4.dcn.offset.weight']['lr_scale'] == pytest.approx(rate)
    assert groups['backbone.levels.2.downsample.conv.weight']['group_name'] == 'layer_33_decay'
    assert groups['roi_head.bbox_head.2.shared_convs.0.bn.weight']['group_name'] == 'layer_38_no_decay'
    assert groups['roi_head.bbox_head.2.shared_convs.0.bn.weight']['lr'] == cfg.optimizer.lr
    assert not any(g['group_name'].endswith('offset_lr_scale') for g in optimizer.param_groups)
