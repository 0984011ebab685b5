"""The synthetic COCO generator: valid COCO files, masks that match boxes and pixels, seeded, independent splits."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from tools.make_synthetic_coco import CLASSES, main


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp('gen')
    main(['--out', str(out), '--num-train', '12', '--num-val', '6', '--size', '96', '--seed', '3', '--ext', 'png'])
    return out


def test_coco_files_load_with_pycocotools_and_list_every_image(generated):
    for split, count in (('train', 12), ('val', 6)):
        coco = COCO(str(generated / 'annotations' / f'instances_{split}.json'))
        assert len(coco.getImgIds()) == count
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        for image in coco.loadImgs(coco.getImgIds()):
            pixels = cv2.imread(str(generated / split / image['file_name']))
            assert pixels.shape == (96, 96, 3)
            assert len(coco.getAnnIds(imgIds=image['id'])) >= 1


def test_masks_agree_with_boxes_and_are_inside_the_image(generated):
    coco = COCO(str(generated / 'annotations' / 'instances_train.json'))
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
        # rasterised polygon and box agree to within a pixel
        assert abs(xs.min() - x) <= 1.5 and abs(ys.min() - y) <= 1.5
        assert abs(xs.max() + 1 - (x + w)) <= 1.5 and abs(ys.max() + 1 - (y + h)) <= 1.5
        assert abs(mask.sum() - ann['area']) <= 0.25 * ann['area'] + 10


def test_objects_do_not_overlap(generated):
    coco = COCO(str(generated / 'annotations' / 'instances_val.json'))
    for image_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
        assert np.sum(masks, axis=0).max() <= 1


def test_objects_are_visible_in_the_pixels(generated):
    """The drawn object differs from the background around it: the mask is what the image shows."""
    coco = COCO(str(generated / 'annotations' / 'instances_train.json'))
    for image in coco.loadImgs(coco.getImgIds()):
        pixels = cv2.imread(str(generated / 'train' / image['file_name'])).astype(np.float32)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
            mask = coco.annToMask(ann).astype(bool)
            inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            # pixels inside the object are nearly uniform compared to the textured background
            assert pixels[inner].std(axis=0).mean() < 25


def test_same_seed_same_data_and_splits_differ(tmp_path):
    for name in ('a', 'b'):
        main(['--out', str(tmp_path / name), '--num-train', '4', '--num-val', '4', '--size', '64', '--seed', '7'])
    train_a = json.loads((tmp_path / 'a/annotations/instances_train.json').read_text())
    train_b = json.loads((tmp_path / 'b/annotations/instances_train.json').read_text())
    val_a = json.loads((tmp_path / 'a/annotations/instances_val.json').read_text())
    assert train_a == train_b
    assert [a['bbox'] for a in train_a['annotations']] != [a['bbox'] for a in val_a['annotations']]
    image_a = cv2.imread(str(tmp_path / 'a/train/train_00001.jpg'))
    image_b = cv2.imread(str(tmp_path / 'b/train/train_00001.jpg'))
    assert np.array_equal(image_a, image_b)


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--num-train', '0'])
    assert exit_info.value.code != 0
    assert '--num-train must be at least 1' in capsys.readouterr().err
