"""Every DINO config of the original: its settings (docs/model_zoo.md), and the detector it builds has exactly
the state-dict keys and shapes of the released checkpoints (H/G/CB built on the meta device)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401  (registers DINO & co.)

REPO = Path(__file__).resolve().parents[2]
HF = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/'

# name -> (folder, num_classes, neck in_channels, num_dn_queries, max_per_img, FFN type, CB?, published #params)
CONFIGS = {
    'dino_4scale_internimage_t_1x_coco_layer_wise_lr': ('coco', 80, [128, 256, 512], 100, 100, 'FFN', False, 49e6),
    'dino_4scale_internimage_l_1x_coco_layer_wise_lr': ('coco', 80, [320, 640, 1280], 100, 300, 'FFN', False, 241e6),
    'dino_4scale_internimage_l_1x_coco_0.1x_backbone_lr': ('coco', 80, [320, 640, 1280], 100, 300, 'FFN', False,
                                                           241e6),
    'dino_4scale_internimage_h_objects365_coco_ss': ('coco', 80, [640, 1280, 2560], 1000, 300, 'FFN', False, 1.1e9),
    'dino_4scale_internimage_g_objects365_coco_ss': ('coco', 80, [1024, 2048, 4096], 1000, 300, 'EfficientFFN',
                                                     False, 3.1e9),
    'dino_4scale_cbinternimage_h_objects365_coco_ss': ('coco', 80, [640, 1280, 2560], 1000, 300, 'FFN', True,
                                                       2.18e9),
    'dino_4scale_cbinternimage_h_objects365_lvis_minival_ss': ('lvis', 1203, [640, 1280, 2560], 1000, 300, 'FFN',
                                                               True, 2.18e9),
    'dino_4scale_cbinternimage_h_objects365_lvis_val_ss': ('lvis', 1203, [640, 1280, 2560], 1000, 300, 'FFN', True,
                                                           2.18e9),
    'dino_4scale_cbinternimage_h_objects365_openimages_ss': ('openimages', 601, [640, 1280, 2560], 1000, 300, 'FFN',
                                                             True, 2.18e9),
    'dino_4scale_cbinternimage_h_objects365_voc07': ('voc', 20, [640, 1280, 2560], 1000, 300, 'FFN', True, 2.18e9),
    'dino_4scale_cbinternimage_h_objects365_voc12': ('voc', 20, [640, 1280, 2560], 1000, 300, 'FFN', True, 2.18e9),
}
BACKBONE_DEPTHS = {'_t_': [4, 4, 18, 4], '_l_': [5, 5, 22, 5], '_h_': [6, 6, 32, 6], '_g_': [2, 2, 48, 4],
                   'cbinternimage_h': [6, 6, 32, 6]}


def load(name: str) -> Config:
    return Config.fromfile(str(REPO / 'configs' / CONFIGS[name][0] / f'{name}.py'))


def msda_keys(prefix: str) -> dict[str, tuple]:
    # 8 heads x 4 levels x 4 points: offsets 2 each, weights 1 each
    shapes = {'sampling_offsets': (256, 256), 'attention_weights': (128, 256), 'value_proj': (256, 256),
              'output_proj': (256, 256)}
    keys = {}
    for layer, (rows, cols) in shapes.items():
        keys[f'{prefix}.{layer}.weight'] = (rows, cols)
        keys[f'{prefix}.{layer}.bias'] = (rows,)
    return keys


def ffn_keys(prefix: str, ffn_type: str) -> dict[str, tuple]:
    if ffn_type == 'FFN':
        return {f'{prefix}.layers.0.0.weight': (2048, 256), f'{prefix}.layers.0.0.bias': (2048,),
                f'{prefix}.layers.1.weight': (256, 2048), f'{prefix}.layers.1.bias': (256,)}
    keys = {f'{prefix}.fc2_bias': (256,)}
    for i in range(4):  # EfficientFFN: 4 chunks of 512, fc2 without bias
        keys.update({f'{prefix}.fc1_{i}.weight': (512, 256), f'{prefix}.fc1_{i}.bias': (512,),
                     f'{prefix}.fc2_{i}.weight': (256, 512)})
    return keys


def norm_keys(prefix: str, count: int) -> dict[str, tuple]:
    return {f'{prefix}.{i}.{p}': (256,) for i in range(count) for p in ('weight', 'bias')}


def expected_head_keys(num_classes: int, ffn_type: str) -> dict[str, tuple]:
    """The bbox_head part of a released DINO checkpoint, written from docs/checkpoints.md (detector keys)."""
    keys = {'bbox_head.label_embedding.weight': (num_classes, 256)}
    for i in range(7):  # 6 decoder layers + the encoder (two-stage) branch
        keys[f'bbox_head.cls_branches.{i}.weight'] = (num_classes, 256)
        keys[f'bbox_head.cls_branches.{i}.bias'] = (num_classes,)
        for j, out in ((0, 256), (2, 256), (4, 4)):
            keys[f'bbox_head.reg_branches.{i}.{j}.weight'] = (out, 256)
            keys[f'bbox_head.reg_branches.{i}.{j}.bias'] = (out,)
    t = 'bbox_head.transformer'
    keys.update({f'{t}.level_embeds': (4, 256), f'{t}.enc_output.weight': (256, 256), f'{t}.enc_output.bias': (256,),
                 f'{t}.enc_output_norm.weight': (256,), f'{t}.enc_output_norm.bias': (256,),
                 f'{t}.query_embed.weight': (900, 256)})
    for i in range(6):
        enc = f'{t}.encoder.layers.{i}'
        keys.update(msda_keys(f'{enc}.attentions.0'))
        keys.update(ffn_keys(f'{enc}.ffns.0', ffn_type))
        keys.update(norm_keys(f'{enc}.norms', 2))
        dec = f'{t}.decoder.layers.{i}'
        keys.update({f'{dec}.attentions.0.attn.in_proj_weight': (768, 256),
                     f'{dec}.attentions.0.attn.in_proj_bias': (768,),
                     f'{dec}.attentions.0.attn.out_proj.weight': (256, 256),
                     f'{dec}.attentions.0.attn.out_proj.bias': (256,)})
        keys.update(msda_keys(f'{dec}.attentions.1'))
        keys.update(ffn_keys(f'{dec}.ffns.0', ffn_type))
        keys.update(norm_keys(f'{dec}.norms', 3))
    keys.update({f'{t}.decoder.ref_point_head.0.weight': (256, 512), f'{t}.decoder.ref_point_head.0.bias': (256,),
                 f'{t}.decoder.ref_point_head.2.weight': (256, 256), f'{t}.decoder.ref_point_head.2.bias': (256,),
                 f'{t}.decoder.norm.weight': (256,), f'{t}.decoder.norm.bias': (256,)})
    return keys


def expected_neck_keys(prefix: str, in_channels: list[int]) -> dict[str, tuple]:
    """ChannelMapper, kernel 1, GN(32), no conv bias; the extra 3x3 s2 conv reads the last backbone feature."""
    keys = {}
    for k, c in enumerate(in_channels):
        keys[f'{prefix}.convs.{k}.conv.weight'] = (256, c, 1, 1)
        keys[f'{prefix}.convs.{k}.gn.weight'] = (256,)
        keys[f'{prefix}.convs.{k}.gn.bias'] = (256,)
    keys[f'{prefix}.extra_convs.0.conv.weight'] = (256, in_channels[-1], 3, 3)
    keys[f'{prefix}.extra_convs.0.gn.weight'] = (256,)
    keys[f'{prefix}.extra_convs.0.gn.bias'] = (256,)
    return keys


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_builds_with_checkpoint_keys(name):
    folder, num_classes, in_channels, num_dn_queries, max_per_img, ffn_type, is_cb, params = CONFIGS[name]
    cfg = load(name)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = build_detector(cfg.model)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    head = {k: v for k, v in state.items() if k.startswith('bbox_head.')}
    assert head == expected_head_keys(num_classes, ffn_type)
    neck_prefix = 'neck.0' if is_cb else 'neck'
    assert {k: v for k, v in state.items() if k.startswith('neck.')} == expected_neck_keys(neck_prefix, in_channels)
    backbone = [k for k in state if k.startswith('backbone.')]
    assert len(backbone) + len(head) + len(expected_neck_keys('', in_channels)) == len(state)
    depths = next(v for k, v in BACKBONE_DEPTHS.items() if k in name)
    if is_cb:
        assert type(model).__name__ == 'CBDINO' and type(model.bbox_head).__name__ == 'CBDINOHead'
        assert 'backbone.cb_modules.0.patch_embed.conv1.weight' in state
        assert not any(k.startswith('backbone.cb_modules.1.patch_embed') for k in state)
        assert state['backbone.cb_modules.1.gamma3'] == (2560,)
        assert state['backbone.cb_linears.0.1.weight'] == (320, 640, 1, 1)
        assert f'backbone.cb_modules.1.levels.2.blocks.{depths[2] - 1}.mlp.fc1.weight' in state
    else:
        assert type(model).__name__ == 'DINO' and type(model.bbox_head).__name__ == 'DINOHead'
        assert 'backbone.patch_embed.conv1.weight' in state
        assert f'backbone.levels.2.blocks.{depths[2] - 1}.mlp.fc1.weight' in state
        assert f'backbone.levels.2.blocks.{depths[2]}.mlp.fc1.weight' not in state
    # the released models' published parameter counts (README): within 1 %
    num_params = sum(p.numel() for p in model.parameters())
    assert abs(num_params - params) / params < 0.01, num_params

    dn = cfg.model.bbox_head.dn_cfg
    assert dn.type == 'CdnQueryGenerator' and dn.noise_scale == dict(label=0.5, box=1.0)
    assert dn.group_cfg == dict(dynamic=True, num_groups=None, num_dn_queries=num_dn_queries)
    assert cfg.model.test_cfg.max_per_img == max_per_img
    assert model.bbox_head.dn_generator.num_dn_queries == num_dn_queries


def test_training_settings():
    t = load('dino_4scale_internimage_t_1x_coco_layer_wise_lr')
    assert t.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4,
                               constructor='CustomLayerDecayOptimizerConstructor',
                               paramwise_cfg=dict(num_layers=30, layer_decay_rate=0.9, depths=[4, 4, 18, 4]))
    assert t.optimizer_config == dict(grad_clip=dict(max_norm=0.1, norm_type=2))
    assert t.lr_config.step == [11] and t.runner == dict(type='EpochBasedRunner', max_epochs=12)
    assert t.data.samples_per_gpu == 2 and t.model.backbone.with_cp is True
    assert t.model.backbone.init_cfg.checkpoint == HF + 'internimage_t_1k_224.pth'
    auto_augment = next(p for p in t.data.train.pipeline if p.type == 'AutoAugment')
    assert auto_augment.policies[1][0].img_scale == [(400, 4200), (500, 4200), (600, 4200)]
    assert auto_augment.policies[1][1].allow_negative_crop is False

    lw = load('dino_4scale_internimage_l_1x_coco_layer_wise_lr')
    assert lw.optimizer.paramwise_cfg == dict(num_layers=37, layer_decay_rate=0.9, depths=[5, 5, 22, 5])
    assert lw.model.backbone.init_cfg.checkpoint == HF + 'internimage_l_22k_192to384.pth'
    assert lw.model.backbone.offset_scale == 2.0 and lw.model.backbone.post_norm is True

    small_lr = load('dino_4scale_internimage_l_1x_coco_0.1x_backbone_lr')
    assert small_lr.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=0.05,
                                      paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))

    for name, layers, depths in [('dino_4scale_internimage_h_objects365_coco_ss', 50, [6, 6, 32, 6]),
                                 ('dino_4scale_internimage_g_objects365_coco_ss', 56, [2, 2, 48, 4]),
                                 ('dino_4scale_cbinternimage_h_objects365_coco_ss', 50, [6, 6, 32, 6])]:
        cfg = load(name)
        assert cfg.optimizer.paramwise_cfg == dict(num_layers=layers, layer_decay_rate=0.94, depths=depths,
                                                   offset_lr_scale=1e-3)
        assert cfg.runner == dict(type='IterBasedRunner', max_iters=20000) and cfg.lr_config.step == []
        assert cfg.checkpoint_config.interval == 200 and cfg.evaluation.interval == 200
        assert cfg.data.samples_per_gpu == 1
        assert cfg.data.test.pipeline[1].img_scale == (2000, 1000)
    assert load('dino_4scale_internimage_h_objects365_coco_ss').get('load_from') is None
    assert load('dino_4scale_cbinternimage_h_objects365_coco_ss').load_from == \
        HF + 'dino_4scale_cbinternimage_h_objects365_80classes.pth'


def test_lvis_openimages_voc_settings():
    for split in ('minival', 'val'):
        cfg = load(f'dino_4scale_cbinternimage_h_objects365_lvis_{split}_ss')
        assert cfg.data.train.type == 'ClassBalancedDataset'
        assert cfg.data.train.dataset.pipeline[3].img_scale == [(2000, 600), (2000, 1200)]
        assert cfg.data.test.ann_file.endswith(f'lvis_v1_{split}.json')
        assert cfg.runner.max_iters == 80000 and cfg.checkpoint_config.max_keep_ckpts == 10
    oi = load('dino_4scale_cbinternimage_h_objects365_openimages_ss')
    assert oi.data.train_dataloader == dict(class_aware_sampler=dict(num_sample_class=1))
    assert oi.data.train.pipeline[1] == dict(type='LoadAnnotations', with_bbox=True, denorm_bbox=True)
    assert oi.runner.max_iters == 100000 and oi.evaluation.metric == 'mAP'
    for year in ('07', '12'):
        voc = load(f'dino_4scale_cbinternimage_h_objects365_voc{year}')
        assert voc.optimizer.lr == 5e-5 and voc.runner.max_iters == 20000
        assert voc.load_from == HF + 'dino_4scale_cbinternimage_h_objects365_20classes.pth'
        assert voc.data.train.type == 'RepeatDataset'
    assert load('dino_4scale_cbinternimage_h_objects365_voc12').data.test.img_prefix == \
        './data/VOCdevkit/VOC2012test/'


def lr_scale_of(optimizer, name: str) -> tuple[float, str]:
    group = next(g for g in optimizer.param_groups if name in g['param_names'])
    return group['lr'] / 1e-4, group['group_name']


@pytest.mark.parametrize('name', ['dino_4scale_internimage_t_1x_coco_layer_wise_lr',
                                  'dino_4scale_internimage_h_objects365_coco_ss'])
def test_layer_wise_lr_decay_on_the_dino_model(name):
    """Layer-decay rule (docs/deviations.md): Lmax = num_layers + 2; scale = rate ** (Lmax - 1 - id);
    level_embeds get the stem's id 0;
    the transformer's sampling offsets get offset_lr_scale (1e-3 for H)."""
    from mmcv.runner import build_optimizer
    cfg = load(name)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = build_detector(cfg.model)
    optimizer = build_optimizer(model, cfg.optimizer)
    layers, rate = cfg.optimizer.paramwise_cfg.num_layers, cfg.optimizer.paramwise_cfg.layer_decay_rate
    offset = cfg.optimizer.paramwise_cfg.get('offset_lr_scale', 1.0)
    assert lr_scale_of(optimizer, 'backbone.patch_embed.conv1.weight')[0] == pytest.approx(rate ** (layers + 1))
    assert lr_scale_of(optimizer, 'bbox_head.transformer.level_embeds')[0] == pytest.approx(rate ** (layers + 1))
    head_scale = lr_scale_of(optimizer, 'bbox_head.cls_branches.0.weight')
    assert head_scale == (pytest.approx(1.0), f'layer_{layers + 1}_decay')
    scale, group = lr_scale_of(optimizer, 'bbox_head.transformer.encoder.layers.0.attentions.0.sampling_offsets.weight')
    assert scale == pytest.approx(offset) and group == f'layer_{layers + 1}_no_decay_offset_lr_scale'
    if name.startswith('dino_4scale_internimage_t'):  # the worked example of docs/deviations.md (layer decay)
        assert lr_scale_of(optimizer, 'backbone.levels.3.blocks.3.mlp.fc1.weight')[0] == pytest.approx(0.9)
        assert lr_scale_of(optimizer, 'backbone.levels.3.blocks.0.mlp.fc1.weight')[0] == pytest.approx(0.9 ** 4)
