"""mmdet_custom.apis.inference: load a detector from config + checkpoint, predict on paths and arrays, plain arrays
back; image_demo's input resolution and prediction records."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint
from mmdet.apis import inference_detector
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401
from mmcv_custom.cli.checks import load_config
from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.inference import (
    Prediction,
    category_ids,
    load_detector,
    output_names,
    predict,
    prediction_records,
    resolve_inputs,
)

REPO = Path(__file__).resolve().parents[2]
CLASSES = ('circle', 'square', 'triangle', 'star')


def write_tiny_model(folder: Path) -> tuple[str, str]:
    """A tiny demo Mask R-CNN (random weights, every detection kept) as a config file and a checkpoint."""
    config = folder / 'tiny_model.py'
    config.write_text(f"_base_ = [{str(REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py')!r}]\n"
                      'model = dict(backbone=dict(depths=[1, 1, 1, 1]), test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    torch.manual_seed(0)
    model = build_detector(load_config(str(config)).model)
    model.init_weights()
    checkpoint = folder / 'tiny.pth'
    save_checkpoint(model, str(checkpoint), meta=dict(CLASSES=CLASSES))
    return str(config), str(checkpoint)


def shapes_image(seed: int, size=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
    img[10:60, 20:80] = (40, 200, 230)
    return img


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp('tiny_model')
    config, checkpoint = write_tiny_model(folder)
    return config, checkpoint, load_detector(config, checkpoint, device='cpu')


def test_predict_returns_plain_arrays_for_paths_and_arrays(tiny, tmp_path):
    config, checkpoint, model = tiny
    assert model.CLASSES == CLASSES  # from the checkpoint's meta
    image = shapes_image(1)
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), image)
    from_path, from_array = predict(model, [str(path), image], batch_size=2)
    for p in (from_path, from_array):
        assert isinstance(p, Prediction) and len(p) > 0
        assert p.boxes.shape == (len(p), 4) and p.boxes.dtype == np.float32
        assert p.labels.dtype == np.int64 and set(p.labels.tolist()) <= set(range(4))
        assert p.masks.shape == (len(p), 96, 128) and p.masks.dtype == bool
        assert (np.diff(p.scores) <= 0).all()  # highest first
        assert p.class_names == CLASSES
    # png is lossless: the path and the array are the same pixels
    np.testing.assert_allclose(from_path.boxes, from_array.boxes, atol=1e-4)
    np.testing.assert_array_equal(from_path.masks, from_array.masks)
    # the same detections as mmdet's own per-class result, thresholded
    raw_boxes, _ = inference_detector(model, image)
    raw = np.concatenate(raw_boxes)
    threshold = float(np.median(raw[:, 4]))
    kept = predict(model, image, score_thr=threshold)[0]
    assert len(kept) == int((raw[:, 4] >= threshold).sum())
    np.testing.assert_allclose(np.sort(kept.scores), np.sort(raw[raw[:, 4] >= threshold, 4]), rtol=1e-6)


def test_batches_give_the_same_detections_as_single_images(tiny):
    _, _, model = tiny
    images = [shapes_image(seed) for seed in range(3)]
    one = predict(model, images, batch_size=1)
    batched = predict(model, iter(images), batch_size=2)  # any iterable, consumed lazily
    assert len(batched) == 3
    for a, b in zip(one, batched):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    with pytest.raises(UserError, match='must be a positive integer'):
        predict(model, images, batch_size=0)


def test_load_detector_refuses_a_checkpoint_of_another_model(tiny, tmp_path):
    config, _, _ = tiny
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.nothing': torch.zeros(1)}}, other)
    with pytest.raises(UserError, match='does not match the model of'):
        load_detector(config, str(other), device='cpu')


def test_resolve_inputs_folder_glob_video_and_errors(tmp_path):
    (tmp_path / 'sub').mkdir()
    for name in ('b.jpg', 'a.png', 'sub/a.png', 'notes.txt'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'clip.MP4').write_bytes(b'x')
    kind, paths = resolve_inputs(str(tmp_path))
    assert kind == 'images' and [Path(p).relative_to(tmp_path).as_posix() for p in paths] == \
        ['a.png', 'b.jpg', 'sub/a.png']
    assert output_names(paths) == ['a.png', 'b.jpg', 'sub/a.png']  # equal names in two folders stay apart
    assert resolve_inputs(str(tmp_path / '*.png')) == ('images', [str(tmp_path / 'a.png')])
    assert resolve_inputs(str(tmp_path / 'clip.MP4')) == ('video', [str(tmp_path / 'clip.MP4')])
    assert resolve_inputs(str(tmp_path / 'b.jpg')) == ('image', [str(tmp_path / 'b.jpg')])
    with pytest.raises(UserError, match=r'no image matches .*\*\.gif'):
        resolve_inputs(str(tmp_path / '*.gif'))
    with pytest.raises(UserError, match='image file .*missing.jpg does not exist'):
        resolve_inputs(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match='has no images'):
        resolve_inputs(str(tmp_path / 'empty'))


def test_prediction_records_and_category_ids(tmp_path):
    prediction = Prediction(boxes=np.array([[10, 20, 50, 60]], np.float32), scores=np.array([0.75], np.float32),
                            labels=np.array([1]), masks=None, class_names=('cat', 'dog'))
    # no annotation file: ids follow the class order from 1 (as to_coco.py numbers them)
    cfg = load_config(str(REPO / 'configs/demo/mask_rcnn_internimage_demo_shapes_scratch.py'))
    cfg.data.test.ann_file = str(tmp_path / 'missing.json')
    assert category_ids(cfg, ('cat', 'dog')) == [1, 2]
    assert prediction_records(prediction, 'x.jpg', [1, 2]) == [
        dict(file='x.jpg', bbox=[10.0, 20.0, 40.0, 40.0], score=0.75, category_id=2, category_name='dog')]
    assert prediction_records(prediction, 'v.mp4', [1, 2], frame=3)[0]['frame'] == 3
    # with the annotation file: its ids, by name (COCO's ids have gaps)
    ann = tmp_path / 'ann.json'
    ann.write_text('{"images": [], "annotations": [], "categories": [{"id": 18, "name": "dog"}, '
                   '{"id": 17, "name": "cat"}]}')
    cfg.data.test.ann_file = str(ann)
    assert category_ids(cfg, ('cat', 'dog')) == [17, 18]
