"""Every (non-DINO) config loads, builds its detector (on the meta device) and has the released checkpoints'
state-dict keys and shapes, derived here from the published layout (docs/checkpoints.md) rather than from the
model; plus each config's settings (docs/model_zoo.md, training settings)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config

import mmdet_custom  # noqa: F401  (registers InternImage, the constructor, CrowdHumanDataset)

REPO = Path(__file__).resolve().parents[2]
# the original's config folders (configs/demo/ holds our own small CPU configs, tested elsewhere)
DATASET_FOLDERS = ('coco', 'lvis', 'openimages', 'voc', 'crowd_human')
CONFIGS = sorted(p.relative_to(REPO).as_posix() for folder in DATASET_FOLDERS
                 for p in (REPO / 'configs' / folder).glob('*.py')
                 if 'dino' not in p.name and 'flash' not in p.name)  # FlashInternImage: test_flash_configs.py
BASES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'configs/_base_').rglob('*.py'))
HF = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/'

# docs/checkpoints.md, backbone variants: channels, depths, groups, post_norm (stage norm present iff not
# post_norm), offset_scale
VARIANTS = {
    't': (64, [4, 4, 18, 4], [4, 8, 16, 32], False, 1.0),
    's': (80, [4, 4, 21, 4], [5, 10, 20, 40], True, 1.0),
    'b': (112, [4, 4, 21, 4], [7, 14, 28, 56], True, 1.0),
    'l': (160, [5, 5, 22, 5], [10, 20, 40, 80], True, 2.0),
    'xl': (192, [5, 5, 24, 5], [12, 24, 48, 96], True, 2.0),
}
# docs/checkpoints.md, backbone keys: released backbone sizes: (parameters, state-dict keys)
BACKBONE_SIZES = {'t': (28_769_520, 685), 's': (48_502_560, 743), 'b': (94_909_920, 743),
                  'l': (218_952_370, 831), 'xl': (328_971_228, 875)}
# docs/model_zoo.md: released detector sizes in millions
DETECTOR_MILLIONS = {'mask_rcnn_t': 49, 'mask_rcnn_s': 69, 'mask_rcnn_b': 115, 'cascade_l': 277, 'cascade_xl': 387}


def expected_backbone(channels: int, depths: list[int], groups: list[int], post_norm: bool) -> dict:
    """Keys and shapes of docs/checkpoints.md for T..XL (layer_scale 1.0, dw kernel 3, no cfs / res-post-norm)."""
    c = channels
    out = {
        'patch_embed.conv1.weight': (c // 2, 3, 3, 3), 'patch_embed.conv1.bias': (c // 2,),
        'patch_embed.norm1.1.weight': (c // 2,), 'patch_embed.norm1.1.bias': (c // 2,),
        'patch_embed.conv2.weight': (c, c // 2, 3, 3), 'patch_embed.conv2.bias': (c,),
        'patch_embed.norm2.1.weight': (c,), 'patch_embed.norm2.1.bias': (c,),
    }
    for i, (depth, g) in enumerate(zip(depths, groups)):
        ci, hidden, k = c * 2 ** i, c * 2 ** i * 4, 9
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}.'
            out.update({
                p + 'gamma1': (ci,), p + 'gamma2': (ci,),
                p + 'norm1.0.weight': (ci,), p + 'norm1.0.bias': (ci,),
                p + 'dcn.dw_conv.0.weight': (ci, 1, 3, 3), p + 'dcn.dw_conv.0.bias': (ci,),
                p + 'dcn.dw_conv.1.1.weight': (ci,), p + 'dcn.dw_conv.1.1.bias': (ci,),
                p + 'dcn.offset.weight': (g * k * 2, ci), p + 'dcn.offset.bias': (g * k * 2,),
                p + 'dcn.mask.weight': (g * k, ci), p + 'dcn.mask.bias': (g * k,),
                p + 'dcn.input_proj.weight': (ci, ci), p + 'dcn.input_proj.bias': (ci,),
                p + 'dcn.output_proj.weight': (ci, ci), p + 'dcn.output_proj.bias': (ci,),
                p + 'norm2.0.weight': (ci,), p + 'norm2.0.bias': (ci,),
                p + 'mlp.fc1.weight': (hidden, ci), p + 'mlp.fc1.bias': (hidden,),
                p + 'mlp.fc2.weight': (ci, hidden), p + 'mlp.fc2.bias': (ci,),
            })
        if not post_norm:
            out[f'levels.{i}.norm.0.weight'] = out[f'levels.{i}.norm.0.bias'] = (ci,)
        if i < 3:
            out[f'levels.{i}.downsample.conv.weight'] = (2 * ci, ci, 3, 3)
            out[f'levels.{i}.downsample.norm.1.weight'] = out[f'levels.{i}.downsample.norm.1.bias'] = (2 * ci,)
    return {'backbone.' + key: shape for key, shape in out.items()}


def expected_fpn(in_channels: list[int]) -> dict:
    out = {}
    for i, cin in enumerate(in_channels):
        out.update({f'neck.lateral_convs.{i}.conv.weight': (256, cin, 1, 1),
                    f'neck.lateral_convs.{i}.conv.bias': (256,),
                    f'neck.fpn_convs.{i}.conv.weight': (256, 256, 3, 3),
                    f'neck.fpn_convs.{i}.conv.bias': (256,)})
    return out


def expected_rpn() -> dict:
    # 3 anchors per location (ratios 0.5, 1, 2; one scale), sigmoid classification -> 3 logits, 12 deltas
    return {'rpn_head.rpn_conv.weight': (256, 256, 3, 3), 'rpn_head.rpn_conv.bias': (256,),
            'rpn_head.rpn_cls.weight': (3, 256, 1, 1), 'rpn_head.rpn_cls.bias': (3,),
            'rpn_head.rpn_reg.weight': (12, 256, 1, 1), 'rpn_head.rpn_reg.bias': (12,)}


def expected_mask_head(prefix: str, num_classes: int) -> dict:
    out = {}
    for i in range(4):
        out[f'{prefix}.convs.{i}.conv.weight'] = (256, 256, 3, 3)
        out[f'{prefix}.convs.{i}.conv.bias'] = (256,)
    out.update({f'{prefix}.upsample.weight': (256, 256, 2, 2), f'{prefix}.upsample.bias': (256,),
                f'{prefix}.conv_logits.weight': (num_classes, 256, 1, 1), f'{prefix}.conv_logits.bias': (num_classes,)})
    return out


def expected_shared2fc(prefix: str, num_classes: int, class_agnostic: bool) -> dict:
    reg = 4 if class_agnostic else 4 * num_classes
    return {f'{prefix}.shared_fcs.0.weight': (1024, 256 * 7 * 7), f'{prefix}.shared_fcs.0.bias': (1024,),
            f'{prefix}.shared_fcs.1.weight': (1024, 1024), f'{prefix}.shared_fcs.1.bias': (1024,),
            f'{prefix}.fc_cls.weight': (num_classes + 1, 1024), f'{prefix}.fc_cls.bias': (num_classes + 1,),
            f'{prefix}.fc_reg.weight': (reg, 1024), f'{prefix}.fc_reg.bias': (reg,)}


def expected_4conv1fc(prefix: str, num_classes: int) -> dict:
    """ConvFCBBoxHead 4 shared convs (ConvModule + SyncBN, conv without bias) + 1 fc, class-specific regression."""
    out = {}
    for i in range(4):
        p = f'{prefix}.shared_convs.{i}.'
        out[p + 'conv.weight'] = (256, 256, 3, 3)
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            out[p + 'bn.' + name] = (256,)
        out[p + 'bn.num_batches_tracked'] = ()
    out.update({f'{prefix}.shared_fcs.0.weight': (1024, 256 * 7 * 7), f'{prefix}.shared_fcs.0.bias': (1024,),
                f'{prefix}.fc_cls.weight': (num_classes + 1, 1024), f'{prefix}.fc_cls.bias': (num_classes + 1,),
                f'{prefix}.fc_reg.weight': (4 * num_classes, 1024), f'{prefix}.fc_reg.bias': (4 * num_classes,)})
    return out


def expected_detector(config: str) -> tuple[str, str, dict]:
    """(detector type, variant, expected state-dict shapes) of a config, from its file name and the published layout."""
    name = Path(config).stem
    variant = name.split('internimage_')[1].split('_')[0]
    channels, depths, groups, post_norm, _ = VARIANTS[variant]
    shapes = expected_backbone(channels, depths, groups, post_norm)
    shapes.update(expected_fpn([channels * 2 ** i for i in range(4)]))
    shapes.update(expected_rpn())
    if name.startswith('mask_rcnn'):
        shapes.update(expected_shared2fc('roi_head.bbox_head', 80, class_agnostic=False))
        shapes.update(expected_mask_head('roi_head.mask_head', 80))
        return 'MaskRCNN', variant, shapes
    for stage in range(3):
        if 'crowd_human' in name:
            shapes.update(expected_shared2fc(f'roi_head.bbox_head.{stage}', 1, class_agnostic=True))
        else:
            shapes.update(expected_4conv1fc(f'roi_head.bbox_head.{stage}', 80))
            shapes.update(expected_mask_head(f'roi_head.mask_head.{stage}', 80))
    return 'CascadeRCNN', variant, shapes


def build_on_meta(cfg):
    from mmdet.models import build_detector
    with torch.device('meta'):
        return build_detector(cfg.model)


def test_every_config_is_covered():
    names = {Path(c).stem for c in CONFIGS}
    assert names == {
        'mask_rcnn_internimage_t_fpn_1x_coco', 'mask_rcnn_internimage_t_fpn_3x_coco',
        'mask_rcnn_internimage_t_fpn_1x_coco_with_dcnv4', 'mask_rcnn_internimage_s_fpn_1x_coco',
        'mask_rcnn_internimage_s_fpn_3x_coco', 'mask_rcnn_internimage_b_fpn_1x_coco',
        'mask_rcnn_internimage_b_fpn_3x_coco', 'cascade_internimage_l_fpn_1x_coco', 'cascade_internimage_l_fpn_3x_coco',
        'cascade_internimage_xl_fpn_1x_coco', 'cascade_internimage_xl_fpn_3x_coco',
        'cascade_internimage_xl_fpn_3x_crowd_human'}


@pytest.mark.parametrize('base', BASES)
def test_base_files_load(base):
    cfg = Config.fromfile(str(REPO / base))
    assert len(cfg) > 0


@pytest.mark.parametrize('config', CONFIGS)
def test_state_dict_matches_released_checkpoint(config):
    cfg = Config.fromfile(str(REPO / config))
    detector_type, variant, expected = expected_detector(config)
    assert cfg.model.type == detector_type
    model = build_on_meta(cfg)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    assert not missing and not unexpected, f'missing {missing[:5]}, unexpected {unexpected[:5]}'
    wrong = [(k, actual[k], expected[k]) for k in expected if actual[k] != expected[k]]
    assert not wrong, wrong[:5]
    # docs/checkpoints.md: the backbone's parameter and key counts
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    assert (backbone_params, len(model.backbone.state_dict())) == BACKBONE_SIZES[variant]
    # docs/model_zoo.md: the released detector sizes (rounded to millions)
    family = 'mask_rcnn' if detector_type == 'MaskRCNN' else 'cascade'
    if 'crowd_human' not in config:
        total = sum(p.numel() for p in model.parameters())
        assert round(total / 1e6) == DETECTOR_MILLIONS[f'{family}_{variant}']


@pytest.mark.parametrize('config', CONFIGS)
def test_config_settings(config):
    """Settings per config (docs/model_zoo.md: training settings, starting checkpoints; docs/checkpoints.md)."""
    cfg = Config.fromfile(str(REPO / config))
    name = Path(config).stem
    variant = name.split('internimage_')[1].split('_')[0]
    channels, depths, groups, post_norm, offset_scale = VARIANTS[variant]
    backbone = cfg.model.backbone
    assert backbone.type == 'InternImage' and backbone.core_op == 'DCNv3'
    assert (backbone.channels, list(backbone.depths), list(backbone.groups)) == (channels, depths, groups)
    assert (backbone.post_norm, backbone.offset_scale, backbone.layer_scale) == (post_norm, offset_scale, 1.0)
    assert backbone.mlp_ratio == 4.0 and backbone.norm_layer == 'LN' and backbone.with_cp is False
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    dpr = {'t': 0.2, 's': 0.3, 'b': 0.4, 'l': 0.4, 'xl': 0.6 if name.endswith('3x_coco') else 0.4}[variant]
    assert backbone.drop_path_rate == dpr
    assert backbone.get('use_dcn_v4_op', False) is name.endswith('with_dcnv4')
    checkpoint = {'t': 'internimage_t_1k_224.pth', 's': 'internimage_s_1k_224.pth', 'b': 'internimage_b_1k_224.pth',
                  'l': 'internimage_l_22k_192to384.pth', 'xl': 'internimage_xl_22k_192to384.pth'}[variant]
    if 'crowd_human' in name:
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint='https://github.com/OpenGVLab/InternImage/'
                                         'releases/download/cls_model/internimage_xl_22k_192to384.pth')
    else:
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint=HF + checkpoint)
    assert cfg.model.neck.in_channels == [channels * 2 ** i for i in range(4)]
    assert cfg.model.neck.num_outs == 5

    # optimizer (docs/model_zoo.md, training settings): lr, wd, layer decay
    num_layers = sum(depths)
    decay = {'mask_rcnn': 1.0, 'cascade': 0.94}['mask_rcnn' if name.startswith('mask') else 'cascade']
    lr, wd, extra = 1e-4, 0.05, {}
    if name.startswith('cascade') and name.endswith('3x_coco'):
        lr, decay, extra = 2e-4, 0.9, dict(offset_lr_scale=0.01)
    if 'crowd_human' in name:
        wd = 1e-4
    assert cfg.optimizer == dict(type='AdamW', lr=lr, weight_decay=wd,
                                 constructor='CustomLayerDecayOptimizerConstructor',
                                 paramwise_cfg=dict(num_layers=num_layers, layer_decay_rate=decay, depths=depths,
                                                    **extra))
    assert cfg.optimizer_config == dict(grad_clip=None)
    assert 'fp16' not in cfg
    # schedule
    three_x = '_3x_' in name
    assert cfg.runner == dict(type='EpochBasedRunner', max_epochs=36 if three_x else 12)
    assert cfg.lr_config == dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001,
                                 step=[27, 33] if three_x else [8, 11])
    assert cfg.checkpoint_config == dict(interval=1, max_keep_ckpts=3, save_last=True)
    assert cfg.data.samples_per_gpu == 2
    # the global batch the lr was set for (this project's addition, for --auto-scale-lr): "8 GPUs x 2 images",
    # "total batch 64" for the Cascade 3x configs, "total batch 128" for CrowdHuman
    base_batch = 128 if 'crowd_human' in name else 64 if name.startswith('cascade') and three_x else 16
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=base_batch)
    if 'crowd_human' in name:
        assert cfg.evaluation == dict(interval=100, metric='bbox', save_best='auto')
        assert cfg.data.train.type == 'CrowdHumanDataset' and cfg.data.train.filter_empty_gt is True
        assert cfg.data.test.ann_file == 'data/CrowdHuman/annotations/annotation_val.json'
    else:
        assert cfg.evaluation == dict(metric=['bbox', 'segm'], classwise=True, save_best='auto')
        assert cfg.data.train.ann_file == 'data/coco/annotations/instances_train2017.json'
    # hooks: EMA only in the Cascade COCO 3x configs (replacing NumClassCheckHook)
    if name.startswith('cascade') and name.endswith('3x_coco'):
        assert cfg.custom_hooks == [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0001, priority=49)]
    else:
        assert cfg.custom_hooks == [dict(type='NumClassCheckHook')]
    # pipelines: single scale 1333x800 for 1x, AutoAugment for 3x; test always single-scale 1333x800, no flip
    steps = [t.type for t in cfg.data.train.pipeline]
    if three_x:
        assert steps[:4] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'AutoAugment']
        policies = cfg.data.train.pipeline[3].policies
        scales = [(s, 1333) for s in range(480, 801, 32)]
        assert [tuple(s) for s in policies[0][0].img_scale] == scales
        assert [tuple(s) for s in policies[1][0].img_scale] == [(400, 1333), (500, 1333), (600, 1333)]
        assert policies[1][1] == dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                                      allow_negative_crop=True)
        assert policies[1][2].override is True and [tuple(s) for s in policies[1][2].img_scale] == scales
    else:
        assert steps[:4] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomFlip']
        assert tuple(cfg.data.train.pipeline[2].img_scale) == (1333, 800)
    with_mask = 'crowd_human' not in name
    assert cfg.data.train.pipeline[1] == dict(type='LoadAnnotations', with_bbox=True, **(
        dict(with_mask=True) if with_mask else {}))
    collected = ['img', 'gt_bboxes', 'gt_labels'] + (['gt_masks'] if with_mask else [])
    assert cfg.data.train.pipeline[-1]['keys'] == collected
    test_aug = cfg.data.test.pipeline[1]
    assert (test_aug.type, tuple(test_aug.img_scale), test_aug.flip) == ('MultiScaleFlipAug', (1333, 800), False)


@pytest.mark.parametrize('config', [c for c in CONFIGS if 'cascade_internimage' in c and 'crowd' not in c])
def test_cascade_coco_heads(config):
    cfg = Config.fromfile(str(REPO / config))
    heads = cfg.model.roi_head.bbox_head
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    for head, std in zip(heads, stds, strict=True):
        assert head.type == 'ConvFCBBoxHead' and (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert head.bbox_coder.target_stds == std and head.reg_decoded_bbox is True
        assert head.reg_class_agnostic is False and head.norm_cfg == dict(type='SyncBN', requires_grad=True)
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
    assert cfg.model.roi_head.mask_head.type == 'FCNMaskHead'
    assert cfg.model.roi_head.stage_loss_weights == [1, 0.5, 0.25]


def test_base_dataset_settings():
    coco_det = Config.fromfile(str(REPO / 'configs/_base_/datasets/coco_detection.py'))
    assert coco_det.evaluation == dict(interval=1, metric='bbox', classwise=True)
    lvis = Config.fromfile(str(REPO / 'configs/_base_/datasets/lvis_v1_instance.py'))
    assert lvis.data.train.type == 'ClassBalancedDataset' and lvis.data.train.oversample_thr == 1e-3
    assert lvis.data.train.dataset.type == 'LVISV1Dataset'
    assert lvis.evaluation == dict(metric=['bbox'], classwise=True)
    minival = Config.fromfile(str(REPO / 'configs/_base_/datasets/lvis_v1_instance_minival.py'))
    assert minival.data.test.ann_file == 'data/lvis_v1/annotations/lvis_v1_minival.json'
    assert minival.data.train.dataset.ann_file == 'data/lvis_v1/annotations/lvis_v1_train.json'
    oi = Config.fromfile(str(REPO / 'configs/_base_/datasets/openimages_detection.py'))
    assert (oi.data_root, oi.data.train.img_prefix, oi.data.val.img_prefix) == (
        'data/OpenImages/', 'data/OpenImages/train/', 'data/OpenImages/validation/')
    assert oi.data.workers_per_gpu == 1 and oi.evaluation.metric == 'mAP'
    voc = Config.fromfile(str(REPO / 'configs/_base_/datasets/voc0712.py'))
    assert voc.data.train.type == 'RepeatDataset' and voc.data.train.times == 3 and voc.evaluation.metric == 'mAP'
    runtime = Config.fromfile(str(REPO / 'configs/_base_/default_runtime.py'))
    assert runtime.custom_hooks == [dict(type='NumClassCheckHook')] and runtime.log_config.interval == 50
    assert not {'opencv_num_threads', 'mp_start_method'} & set(runtime)
    # this project's additions: mmdet's own tools see the plugin; --auto-scale-lr knows the recipe's batch
    assert runtime.custom_imports == dict(imports=['mmdet_custom'], allow_failed_imports=False)
    assert runtime.auto_scale_lr == dict(enable=False, base_batch_size=16)
    crowd_model = Config.fromfile(str(REPO / 'configs/_base_/models/cascade_mask_rcnn_r50_fpn_crowdhuman.py'))
    assert 'mask_head' not in crowd_model.model.roi_head and crowd_model.model.type == 'CascadeRCNN'
    six_x = Config.fromfile(str(REPO / 'configs/_base_/schedules/schedule_6x.py'))
    assert six_x.lr_config.step == [62, 68] and six_x.runner.max_epochs == 72 and six_x.lr_config.warmup_iters == 2000
