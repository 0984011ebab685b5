"""DINO / CB-DINO test-time augmentation (DINOHead.aug_test): one view equals simple_test exactly, a flipped view maps
back mirrored, several views merge by class-wise NMS over their union (checked against torchvision's NMS)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from mmcv import Config
from mmdet.datasets.pipelines import Compose
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401  (registers DINO & co.)
from tests.models.test_dino import IMG_NORM, tiny_dino_cfg
from tests.models.test_dino_cb import tiny_cb_dino_cfg

HEIGHT, WIDTH = 90, 150  # not the test scale: the views have scale factors != 1


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(cfg: dict):
    torch.manual_seed(0)
    model = build_detector(Config(dict(model=cfg)).model)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def dino():
    return build(tiny_dino_cfg())


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 80, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[10:50, 20:70] = 220
    img[40:85, 90:140] = (30, 200, 60)
    return img


def views(image: np.ndarray, scales: list[tuple[int, int]], flip: bool) -> tuple[list, list]:
    """The image through mmdet's MultiScaleFlipAug, as test.py's pipeline gives it to the model (one image/batch)."""
    pipeline = Compose([
        dict(type='LoadImageFromWebcam'),
        dict(type='MultiScaleFlipAug', img_scale=scales, flip=flip, transforms=[
            dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **IMG_NORM),
            dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img'])])])
    data = pipeline(dict(img=image.copy()))
    imgs = [img[None] for img in data['img']]
    metas = [[meta.data] for meta in data['img_metas']]
    for img, meta in zip(imgs, metas):  # as BaseDetector.forward_test does
        meta[0]['batch_input_shape'] = tuple(img.shape[-2:])
    return imgs, metas


def as_arrays(result: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """bbox2result's per-class arrays -> (boxes with scores, labels), in a canonical order."""
    dets = np.concatenate(result)
    labels = np.concatenate([np.full(len(r), i) for i, r in enumerate(result)])
    order = np.lexsort((dets[:, 0], dets[:, 4], labels))
    return dets[order], labels[order]


@pytest.mark.parametrize('make', [lambda: None, lambda: build(tiny_cb_dino_cfg())], ids=['dino', 'cb_dino'])
def test_one_view_without_flip_equals_simple_test_exactly(make, dino, image):
    model = make() or dino
    imgs, metas = views(image, [(128, 128)], flip=False)
    assert not np.allclose(metas[0][0]['scale_factor'], 1)
    # a merge that would change this view's detections (any overlap suppressed) if a single view were merged
    model.bbox_head.test_cfg['tta_merge'] = dict(rule='nms', iou_threshold=0.01)
    try:
        with torch.no_grad():
            simple = model.simple_test(imgs[0], metas[0], rescale=True)[0]
            aug = model.aug_test(imgs, metas, rescale=True)[0]
            aug_unscaled = model.aug_test(imgs, metas, rescale=False)[0]
            simple_unscaled = model.simple_test(imgs[0], metas[0], rescale=False)[0]
    finally:
        del model.bbox_head.test_cfg['tta_merge']
    assert sum(len(r) for r in simple) == 10  # max_per_img
    for cls_simple, cls_aug in zip(simple, aug):
        assert np.array_equal(cls_simple, cls_aug)
    for cls_simple, cls_aug in zip(simple_unscaled, aug_unscaled):  # rescale=False: the view's own pixels
        np.testing.assert_allclose(cls_simple, cls_aug, rtol=1e-6, atol=1e-4)


def test_flipped_view_maps_back_mirrored(dino, image):
    imgs, metas = views(image, [(128, 128)], flip=True)
    assert [m[0]['flip'] for m in metas] == [False, True]
    with torch.no_grad():
        aug = as_arrays(dino.aug_test(imgs[1:], metas[1:], rescale=True)[0])
        # the flipped view's plain detections (simple_test ignores `flip`), mirrored by hand into the original image
        plain = dino.simple_test(imgs[1], metas[1], rescale=True)[0]
    expected = [np.stack([WIDTH - r[:, 2], r[:, 1], WIDTH - r[:, 0], r[:, 3], r[:, 4]], 1) for r in plain]
    expected = as_arrays(expected)
    np.testing.assert_array_equal(aug[1], expected[1])
    np.testing.assert_allclose(aug[0], expected[0], rtol=0, atol=1e-3)


def test_views_merge_by_classwise_nms_over_the_union(dino, image):
    imgs, metas = views(image, [(128, 128), (160, 160)], flip=True)
    assert len(imgs) == 4
    dino.bbox_head.test_cfg['tta_merge'] = dict(rule='nms', iou_threshold=0.5)
    try:
        with torch.no_grad():
            merged = as_arrays(dino.aug_test(imgs, metas, rescale=True)[0])
            singles = [dino.aug_test([img], [meta], rescale=True)[0] for img, meta in zip(imgs, metas)]
    finally:
        del dino.bbox_head.test_cfg['tta_merge']
    # expected: torchvision's class-wise NMS over the union of the four views' mapped-back detections
    union = np.concatenate([as_arrays(s)[0] for s in singles])
    labels = np.concatenate([as_arrays(s)[1] for s in singles])
    boxes, scores = torch.from_numpy(union[:, :4]), torch.from_numpy(union[:, 4])
    keep = torchvision.ops.batched_nms(boxes, scores, torch.from_numpy(labels), 0.5)[:10].numpy()
    expected = as_arrays([union[keep][labels[keep] == c] for c in range(4)])
    assert len(merged[0]) == len(expected[0]) <= 10
    np.testing.assert_array_equal(merged[1], expected[1])
    np.testing.assert_allclose(merged[0], expected[0], rtol=0, atol=1e-5)
    # no two kept boxes of one class overlap above the threshold
    for c in range(4):
        same = torch.from_numpy(merged[0][merged[1] == c, :4])
        iou = torchvision.ops.box_iou(same, same).fill_diagonal_(0)
        assert (iou <= 0.5 + 1e-6).all()


def test_forward_test_with_two_views_runs_aug_test(dino, image):
    """mmdet's forward_test (what test.py and single_gpu_test call) sends several views to aug_test."""
    imgs, metas = views(image, [(128, 128)], flip=True)
    with torch.no_grad():
        result = dino(return_loss=False, rescale=True, img=imgs, img_metas=metas)
    assert len(result) == 1 and len(result[0]) == 4
    dets = np.concatenate(result[0])
    assert 0 < len(dets) <= 10
    assert (dets[:, [0, 2]] <= WIDTH + 1e-3).all() and (dets[:, [1, 3]] <= HEIGHT + 1e-3).all()
