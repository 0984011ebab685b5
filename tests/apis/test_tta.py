"""test.py --tta: the config's `tta` settings (or the defaults) in the test pipeline, the _ms configs, and mmdet's
aug_test of Mask R-CNN and Cascade Mask R-CNN on InternImage through that pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv import Config
from mmdet.datasets.pipelines import Compose
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401  (registers InternImage)
from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.tta import apply_tta

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py'
TINY_BACKBONE = dict(type='InternImage', core_op='DCNv3', channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8],
                     drop_path_rate=0.0, out_indices=(0, 1, 2, 3), init_cfg=None)


def msfa(cfg) -> dict:
    return next(step for step in cfg.data.test.pipeline if step.type == 'MultiScaleFlipAug')


def test_defaults_keep_the_test_scale_and_add_a_flip():
    cfg = Config.fromfile(str(DEMO))
    assert msfa(cfg).flip is False
    line = apply_tta(cfg)
    step = msfa(cfg)
    assert step.img_scale == (128, 128) and step.flip is True and step.flip_direction == 'horizontal'
    assert cfg.data.test_dataloader['samples_per_gpu'] == 1
    assert line == "test-time augmentation: 2 views per image (scales (128, 128), flip horizontal)"


def test_config_tta_sets_scales_and_flip_and_rejects_unknown_keys():
    cfg = Config.fromfile(str(DEMO))
    cfg.tta = dict(img_scale=[(96, 96), (128, 128), (160, 160)], flip=True, flip_direction=['horizontal', 'vertical'])
    assert '9 views' in apply_tta(cfg)
    assert msfa(cfg).img_scale == [(96, 96), (128, 128), (160, 160)]
    cfg.tta = dict(scales=[(96, 96)])
    with pytest.raises(UserError, match='config field tta: unknown key.*scales'):
        apply_tta(cfg)
    cfg = Config.fromfile(str(DEMO))
    cfg.data.test.pipeline = [step for step in cfg.data.test.pipeline if step.type != 'MultiScaleFlipAug']
    with pytest.raises(UserError, match='no MultiScaleFlipAug'):
        apply_tta(cfg)


@pytest.mark.parametrize('name', ['coco/dino_4scale_cbinternimage_h_objects365_coco',
                                  'lvis/dino_4scale_cbinternimage_h_objects365_lvis_val'])
def test_ms_configs_are_the_ss_model_tested_on_three_scales_with_flip(name):
    ms = Config.fromfile(str(REPO / f'configs/{name}_ms.py'))
    ss = Config.fromfile(str(REPO / f'configs/{name}_ss.py'))
    step = msfa(ms)
    assert step.img_scale == [(1600, 800), (2000, 1000), (2400, 1200)] and step.flip is True
    assert msfa(ss).img_scale == (2000, 1000) and msfa(ss).flip is False
    assert ms.model.test_cfg.tta_merge == dict(rule='nms', iou_threshold=0.6)
    ms.model.test_cfg.pop('tta_merge')
    assert ms.model == ss.model and ms.data.val == ss.data.val
    apply_tta(ms)  # --tta on the _ms config changes nothing
    assert msfa(ms).img_scale == [(1600, 800), (2000, 1000), (2400, 1200)] and msfa(ms).flip is True


def tiny_cascade_cfg() -> dict:
    cfg = Config.fromfile(str(REPO / 'configs/_base_/models/cascade_mask_rcnn_r50_fpn.py'))
    cfg.model.backbone = TINY_BACKBONE
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    return cfg.model


def tiny_mask_rcnn_cfg() -> dict:
    cfg = Config.fromfile(str(DEMO))
    cfg.model.backbone = TINY_BACKBONE
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    return cfg.model


@pytest.mark.parametrize('make_cfg', [tiny_mask_rcnn_cfg, tiny_cascade_cfg], ids=['mask_rcnn', 'cascade'])
def test_two_stage_aug_test_through_the_tta_pipeline(make_cfg):
    torch.set_num_threads(1)
    cfg = Config.fromfile(str(DEMO))
    cfg.tta = dict(img_scale=[(64, 64), (96, 96)], flip=True)
    apply_tta(cfg)
    pipeline = [dict(type='LoadImageFromWebcam')] + cfg.data.test.pipeline[1:]  # an array, as inference does
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(60, 80, 3), dtype=np.uint8)
    image[10:40, 20:60] = 230
    data = Compose(pipeline)(dict(img=image))
    imgs = [img[None] for img in data['img']]
    metas = [[meta.data] for meta in data['img_metas']]
    assert len(imgs) == 4 and [m[0]['flip'] for m in metas] == [False, True, False, True]
    model_cfg = make_cfg()
    model_cfg.test_cfg.rcnn.score_thr = 0.0  # random weights score low: keep everything
    model_cfg.test_cfg.rcnn.max_per_img = 10  # few proposals and detections: seconds, not a minute
    model_cfg.test_cfg.rpn.update(nms_pre=100, max_per_img=30)
    torch.manual_seed(0)
    model = build_detector(model_cfg).eval()
    with torch.no_grad():
        (bbox_result, segm_result), = model(return_loss=False, rescale=True, img=imgs, img_metas=metas)
    num_classes = model_cfg.roi_head.bbox_head['num_classes'] if isinstance(model_cfg.roi_head.bbox_head, dict) \
        else model_cfg.roi_head.bbox_head[0]['num_classes']
    assert len(bbox_result) == len(segm_result) == num_classes
    dets = np.concatenate(bbox_result)
    assert len(dets) > 0 and np.isfinite(dets).all()
    # merged in the original image: boxes inside it, masks of its size
    assert (dets[:, [0, 2]] <= 80 + 1e-3).all() and (dets[:, [1, 3]] <= 60 + 1e-3).all()
    masks = [m for per_class in segm_result for m in per_class]
    assert len(masks) == len(dets) and all(m.shape == (60, 80) for m in masks)
