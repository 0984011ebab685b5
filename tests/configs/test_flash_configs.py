"""The 12 FlashInternImage configs: each builds (on the meta device) with the released checkpoints' keys and shapes,
has the published parameter count, and resolves to the original config's settings (written out here per file)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401
from tests.configs.test_configs import expected_4conv1fc, expected_mask_head, expected_rpn, expected_shared2fc
from tests.configs.test_dino_configs import expected_head_keys, expected_neck_keys
from tests.models.flash_intern_image_keys import FLASH_VARIANTS, expected_variant

REPO = Path(__file__).resolve().parents[2]
HF = 'https://huggingface.co/OpenGVLab/DCNv4/resolve/main/'
CHECKPOINTS = {'t': 'flash_intern_image_t_1k_224.pth', 's': 'flash_intern_image_s_1k_224.pth',
               'b': 'flash_intern_image_b_1k_224.pth', 'l': 'flash_intern_image_l_22k_384.pth'}

# config -> (variant, published detector parameters in millions, drop_path_rate, with_cp, images per GPU)
CONFIGS = {
    'mask_rcnn_flash_intern_image_t_fpn_1x_coco': ('t', 48.8, 0.2, True, 2),
    'mask_rcnn_flash_intern_image_t_fpn_3x_coco': ('t', 48.8, 0.2, True, 2),
    'mask_rcnn_flash_intern_image_s_fpn_1x_coco': ('s', 68.7, 0.3, True, 2),
    'mask_rcnn_flash_intern_image_s_fpn_3x_coco': ('s', 68.7, 0.4, True, 8),
    'mask_rcnn_flash_intern_image_b_fpn_1x_coco': ('b', 115.2, 0.3, True, 2),
    'mask_rcnn_flash_intern_image_b_fpn_3x_coco': ('b', 115.2, 0.4, True, 4),
    'cascade_flash_intern_image_l_fpn_1x_coco': ('l', 277.3, 0.4, False, 2),
    'cascade_flash_intern_image_l_fpn_3x_coco': ('l', 277.3, 0.4, True, 4),
    'dino_4scale_flash_internimage_t_1x_coco': ('t', 48.6, 0.2, True, 4),
    'dino_4scale_flash_internimage_s_1x_coco': ('s', 68.8, 0.3, True, 4),
    'dino_4scale_flash_internimage_b_1x_coco': ('b', 115.9, 0.3, True, 4),
    'dino_4scale_flash_internimage_l_1x_coco': ('l', 241.0, 0.4, True, 2),
}
# (lr, weight decay, layer-decay paramwise_cfg or None for mmcv's default constructor)
OPTIMIZERS = {
    'mask_rcnn_flash_intern_image_t_fpn_1x_coco': (1e-4, 0.05, dict(num_layers=30, layer_decay_rate=1.0)),
    'mask_rcnn_flash_intern_image_t_fpn_3x_coco': (1e-4, 0.05, dict(num_layers=30, layer_decay_rate=1.0)),
    'mask_rcnn_flash_intern_image_s_fpn_1x_coco': (1e-4, 0.05, dict(num_layers=33, layer_decay_rate=1.0)),
    'mask_rcnn_flash_intern_image_s_fpn_3x_coco': (2e-4, 0.05, dict(num_layers=33, layer_decay_rate=1.0)),
    'mask_rcnn_flash_intern_image_b_fpn_1x_coco': (1e-4, 0.05, dict(num_layers=33, layer_decay_rate=1.0)),
    'mask_rcnn_flash_intern_image_b_fpn_3x_coco': (2e-4, 0.05, dict(num_layers=33, layer_decay_rate=0.9,
                                                                     offset_lr_scale=0.01)),
    'cascade_flash_intern_image_l_fpn_1x_coco': (1e-4, 0.05, dict(num_layers=37, layer_decay_rate=0.94)),
    'cascade_flash_intern_image_l_fpn_3x_coco': (2e-4, 0.05, dict(num_layers=37, layer_decay_rate=0.9,
                                                                   offset_lr_scale=0.01)),
    'dino_4scale_flash_internimage_t_1x_coco': (2e-4, 1e-4, dict(num_layers=30, layer_decay_rate=0.9)),
    'dino_4scale_flash_internimage_s_1x_coco': (2e-4, 1e-4, dict(num_layers=33, layer_decay_rate=0.9)),
    'dino_4scale_flash_internimage_b_1x_coco': (2e-4, 1e-4, dict(num_layers=33, layer_decay_rate=0.9)),
    'dino_4scale_flash_internimage_l_1x_coco': (1e-4, 0.05, None),
}


def load(name: str) -> Config:
    return Config.fromfile(str(REPO / 'configs/coco' / f'{name}.py'))


def plain(value):
    """ConfigDicts and tuples as plain dicts and lists, for comparing with literal expectations."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_every_flash_config_is_covered():
    found = {p.stem for p in (REPO / 'configs/coco').glob('*flash*.py')}
    assert found == set(CONFIGS)


def expected_backbone_cfg(name: str) -> dict:
    variant, _, drop_path_rate, with_cp, _ = CONFIGS[name]
    channels, depths, groups, post_norm, dw, out_bias, fc2_bias, offset_scale = FLASH_VARIANTS[variant]
    cfg = dict(type='FlashInternImage', core_op='DCNv4', channels=channels, depths=depths, groups=groups,
               mlp_ratio=4.0, drop_path_rate=drop_path_rate, norm_layer='LN', layer_scale=1.0,
               offset_scale=offset_scale, post_norm=post_norm, with_cp=with_cp,
               out_indices=[1, 2, 3] if name.startswith('dino') else [0, 1, 2, 3],
               init_cfg=dict(type='Pretrained', checkpoint=HF + CHECKPOINTS[variant]))
    if dw is not None:
        cfg['dw_kernel_size'] = dw
    if out_bias:
        cfg.update(dcn_output_bias=True, mlp_fc2_bias=True)
    return cfg


def expected_fpn_vitdet(in_channels: list[int]) -> dict[str, tuple]:
    """ConvModules with LN (abbreviation ``ln``) and therefore without conv bias."""
    out = {}
    for i, cin in enumerate(in_channels):
        for kind, kernel, channels_in in (('lateral_convs', 1, cin), ('fpn_convs', 3, 256)):
            out[f'neck.{kind}.{i}.conv.weight'] = (256, channels_in, kernel, kernel)
            out[f'neck.{kind}.{i}.ln.weight'] = out[f'neck.{kind}.{i}.ln.bias'] = (256,)
    return out


def expected_state(name: str) -> dict[str, tuple]:
    variant = CONFIGS[name][0]
    channels = FLASH_VARIANTS[variant][0]
    shapes = {'backbone.' + k: v for k, v in expected_variant(variant).items()}
    if name.startswith('dino'):
        shapes.update(expected_head_keys(80, 'FFN'))
        shapes.update(expected_neck_keys('neck', [channels * 2 ** i for i in (1, 2, 3)]))
        return shapes
    shapes.update(expected_fpn_vitdet([channels * 2 ** i for i in range(4)]))
    shapes.update(expected_rpn())
    if name.startswith('mask_rcnn'):
        shapes.update(expected_shared2fc('roi_head.bbox_head', 80, class_agnostic=False))
        shapes.update(expected_mask_head('roi_head.mask_head', 80))
    else:
        for stage in range(3):
            shapes.update(expected_4conv1fc(f'roi_head.bbox_head.{stage}', 80))
            shapes.update(expected_mask_head(f'roi_head.mask_head.{stage}', 80))
    return shapes


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_builds_with_released_keys_and_size(name):
    cfg = load(name)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = build_detector(cfg.model)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_state(name)
    missing, unexpected = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    assert not missing and not unexpected, f'missing {missing[:5]}, unexpected {unexpected[:5]}'
    assert [(k, actual[k], expected[k]) for k in expected if actual[k] != expected[k]] == []
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e6, 1) == CONFIGS[name][1]
    assert type(model.backbone).__name__ == 'FlashInternImage'


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_settings_are_the_originals(name):
    cfg = load(name)
    variant, _, _, _, images_per_gpu = CONFIGS[name]
    channels, depths = FLASH_VARIANTS[variant][:2]
    assert plain(cfg.model.backbone) == expected_backbone_cfg(name)
    three_x = '_3x_' in name
    lr, weight_decay, paramwise = OPTIMIZERS[name]
    if paramwise is None:
        assert plain(cfg.optimizer) == dict(type='AdamW', lr=lr, weight_decay=weight_decay,
                                            paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
    else:
        assert plain(cfg.optimizer) == dict(type='AdamW', lr=lr, weight_decay=weight_decay,
                                            constructor='CustomLayerDecayOptimizerConstructor',
                                            paramwise_cfg=dict(**paramwise, depths=depths))
    assert cfg.data.samples_per_gpu == images_per_gpu
    assert plain(cfg.checkpoint_config) == dict(interval=1, max_keep_ckpts=1, save_last=True)
    assert cfg.evaluation.save_best == 'auto'
    assert cfg.runner == dict(type='EpochBasedRunner', max_epochs=36 if three_x else 12)
    assert 'fp16' not in cfg
    steps = [step.type for step in cfg.data.train.pipeline]
    if name.startswith('dino'):
        assert cfg.model.type == 'DINO' and cfg.model.test_cfg.max_per_img == 300
        assert plain(cfg.model.neck) == dict(type='ChannelMapper', in_channels=[channels * 2 ** i for i in (1, 2, 3)],
                                             kernel_size=1, out_channels=256, act_cfg=None,
                                             norm_cfg=dict(type='GN', num_groups=32), num_outs=4)
        layers = cfg.model.bbox_head.transformer
        assert layers.encoder.transformerlayers.attn_cfgs.type == 'MultiScaleDeformableAttention'
        assert layers.decoder.transformerlayers.attn_cfgs[1].type == 'MultiScaleDeformableAttention'
        assert plain(cfg.optimizer_config) == dict(grad_clip=dict(max_norm=0.1, norm_type=2))
        assert cfg.lr_config.step == [11] and cfg.lr_config.warmup_iters == 500
        auto_augment = cfg.data.train.pipeline[3]
        assert auto_augment.type == 'AutoAugment'
        assert plain(auto_augment.policies[1][0].img_scale) == [[400, 4200], [500, 4200], [600, 4200]]
        assert auto_augment.policies[1][1].allow_negative_crop is False
        assert cfg.custom_hooks == [dict(type='NumClassCheckHook')]
        return
    assert plain(cfg.model.neck) == dict(type='FPN_vitdet', in_channels=[channels * 2 ** i for i in range(4)],
                                         out_channels=256, norm_cfg=dict(type='LN', requires_grad=True),
                                         use_residual=True, num_outs=5)
    assert plain(cfg.optimizer_config) == dict(grad_clip=None)
    assert cfg.lr_config.step == ([27, 33] if three_x else [8, 11])
    if three_x:
        assert steps[:4] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'AutoAugment']
        policies = cfg.data.train.pipeline[3].policies
        assert plain(policies[1][0].img_scale) == [[400, 1333], [500, 1333], [600, 1333]]
        assert policies[1][1].allow_negative_crop is True
    else:
        assert steps[:4] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomFlip']
    if name.startswith('cascade'):
        heads = cfg.model.roi_head.bbox_head
        stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        for head, std in zip(heads, stds, strict=True):
            if three_x:
                assert head.type == 'ConvFCBBoxHead' and 'with_dcn' not in head
            else:
                assert head.type == 'DCNv4FCBBoxHead' and head.with_dcn is False
            assert (head.num_shared_convs, head.num_shared_fcs, head.bbox_coder.target_stds) == (4, 1, std)
            assert head.norm_cfg == dict(type='SyncBN', requires_grad=True)
            assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0) and head.reg_decoded_bbox is True
        ema = [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0001, priority=49)]
        assert cfg.custom_hooks == (ema if three_x else [dict(type='NumClassCheckHook')])
    else:
        assert cfg.model.type == 'MaskRCNN'
        assert cfg.custom_hooks == [dict(type='NumClassCheckHook')]


def test_bad_neck_and_head_options_are_refused_in_one_line():
    from mmdet.models import build_head, build_neck
    with pytest.raises(ValueError, match='FPN_vitdet: use_residual=False'):
        build_neck(dict(type='FPN_vitdet', in_channels=[8, 16], out_channels=8, num_outs=2, use_residual=False))
    with pytest.raises(ValueError, match='DCNv4FCBBoxHead: with_dcn=True'):
        build_head(dict(type='DCNv4FCBBoxHead', num_shared_convs=1, num_shared_fcs=1, with_dcn=True))


def test_fpn_vitdet_normalises_channels():
    """The LN of FPN_vitdet acts on the channels of each pixel (the original permutes to channels-last)."""
    from mmdet.models import build_neck
    neck = build_neck(dict(type='FPN_vitdet', in_channels=[8, 16], out_channels=12, num_outs=3,
                           norm_cfg=dict(type='LN', requires_grad=True)))
    neck.init_weights()
    feats = [torch.randn(2, 8, 10, 6), torch.randn(2, 16, 5, 3)]
    lateral = neck.lateral_convs[0]
    conv = torch.nn.functional.conv2d(feats[0], lateral.conv.weight)
    expected = torch.nn.functional.layer_norm(conv.permute(0, 2, 3, 1), (12,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(lateral(feats[0]), expected)
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 12, 10, 6), (2, 12, 5, 3), (2, 12, 3, 2)]
