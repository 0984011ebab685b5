"""One real training step and one test forward of the Mask R-CNN InternImage-T and Cascade InternImage-L configs on
tiny synthetic COCO data, on the CPU: the configs' own detector, pipelines and optimizer (through the layer-decay
constructor), only the image scale reduced and the pretrained-backbone download switched off."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.parallel import collate
from mmcv.runner import build_optimizer

import mmdet_custom  # noqa: F401
from mmdet_custom.apis import revert_sync_bn_if_single_process
from tests.helpers import make_coco_dataset

REPO = Path(__file__).resolve().parents[2]
IMAGE_HW = (96, 128)
SCALE = (128, 96)  # mmdet (long, short): keeps the synthetic images at their size


def _set_scales(pipeline: list) -> None:
    """Replace every image scale in ``pipeline`` (Resize, MultiScaleFlipAug, AutoAugment policies) by SCALE."""
    for step in pipeline:
        if 'img_scale' in step:
            step['img_scale'] = SCALE
            step.pop('multiscale_mode', None)
        for policy in step.get('policies', []):
            _set_scales(policy)
        if 'transforms' in step:
            _set_scales(step['transforms'])


def _config(name: str, data: dict) -> Config:
    cfg = Config.fromfile(str(REPO / 'configs/coco' / name))
    cfg.model.backbone.init_cfg = None  # the released ImageNet weights cannot be downloaded here
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # random weights score low: keep detections to check their format
    # Fewer RoIs than the configs' 512 sampled / 1000 proposals per image: on 2 CPU cores the 4conv1fc heads of the
    # Cascade model would otherwise dominate the run time. Sampling sizes only, not architecture.
    rcnn_train = cfg.model.train_cfg.rcnn
    for stage in rcnn_train if isinstance(rcnn_train, list) else [rcnn_train]:
        stage.sampler.num = 64
    cfg.model.test_cfg.rpn.max_per_img = 100
    for split in ('train', 'test'):
        cfg.data[split].update(ann_file=data['ann_file'], img_prefix=data['img_prefix'], classes=data['classes'])
        _set_scales(cfg.data[split].pipeline)
    return cfg


def _unwrap(batch: dict) -> dict:
    return {key: value.data[0] for key, value in batch.items()}


def _train_step_and_test(cfg: Config, num_train_images: int) -> None:
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    model = build_detector(cfg.model)
    # No init_weights(): the constructors' initialisation is enough for one step, and re-initialising tens of
    # millions of parameters costs 15+ s on 2 shared cores (the tools call it; it is tested with the backbone).
    model = revert_sync_bn_if_single_process(model, distributed=False, logger=None)
    optimizer = build_optimizer(model, cfg.optimizer)
    assert type(optimizer).__name__ == 'AdamW'
    assert {g['weight_decay'] for g in optimizer.param_groups} == {0.0, cfg.optimizer.weight_decay}

    train_set = build_dataset(cfg.data.train)
    batch = _unwrap(collate([train_set[i] for i in range(num_train_images)], samples_per_gpu=num_train_images))
    assert batch['img'].shape[-2:] == (96, 128)
    model.train()
    watched = {name: p.detach().clone() for name, p in model.named_parameters()
               if name in ('backbone.patch_embed.conv1.weight', 'rpn_head.rpn_conv.weight')}
    losses = model(return_loss=True, **batch)
    loss, log_vars = model._parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    assert all(np.isfinite(v) for v in log_vars.values())
    assert any('loss_mask' in k for k in log_vars) and any('loss_rpn_cls' in k for k in log_vars)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for name, before in watched.items():
        assert not torch.equal(before, dict(model.named_parameters())[name]), f'{name} did not change'

    test_set = build_dataset(cfg.data.test, dict(test_mode=True))
    sample = collate([test_set[0]], samples_per_gpu=1)
    img, img_metas = sample['img'][0], sample['img_metas'][0].data[0]  # one augmentation: (1, 3, H, W) + its metas
    assert img.shape == (1, 3, 96, 128)
    model.eval()
    with torch.no_grad():
        results = model.simple_test(img, img_metas, rescale=True)
    assert len(results) == 1
    bbox_results, segm_results = results[0]
    assert len(bbox_results) == len(segm_results) == 80
    num_dets = 0
    for boxes, masks in zip(bbox_results, segm_results):
        assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32 and boxes.shape[1:] == (5,)
        assert len(masks) == len(boxes)
        for mask in masks:
            assert mask.shape == IMAGE_HW and mask.dtype == bool
        num_dets += len(boxes)
    assert 0 < num_dets <= cfg.model.test_cfg.rcnn.max_per_img
    all_boxes = np.concatenate(bbox_results)
    assert np.isfinite(all_boxes).all()
    assert (all_boxes[:, 2] >= all_boxes[:, 0]).all() and (all_boxes[:, 3] >= all_boxes[:, 1]).all()
    assert (all_boxes[:, [0, 2]] <= IMAGE_HW[1]).all() and (all_boxes[:, [1, 3]] <= IMAGE_HW[0]).all()


@pytest.fixture(scope='module')
def coco_data(tmp_path_factory):
    return make_coco_dataset(str(tmp_path_factory.mktemp('coco')), num_images=2, image_size=IMAGE_HW,
                             num_classes=80, seed=0)


def test_mask_rcnn_t_train_step_and_test(coco_data):
    _train_step_and_test(_config('mask_rcnn_internimage_t_fpn_1x_coco.py', coco_data), num_train_images=2)


@pytest.mark.slow  # ~277M parameters: 60-180 s on 2 shared CPU cores
def test_cascade_l_3x_train_step_and_test(coco_data):
    """The 3x config: AutoAugment pipeline, SyncBN heads (reverted to BN), layer decay 0.9 with offset_lr_scale."""
    _train_step_and_test(_config('cascade_internimage_l_fpn_3x_coco.py', coco_data), num_train_images=1)
