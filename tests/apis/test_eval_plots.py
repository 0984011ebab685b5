"""Per-class AP and precision-recall from COCOeval's precision array, on a tiny COCO evaluation whose APs are
worked out by hand with COCO's 101-point interpolation."""
from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
from mmdet.datasets.api_wrappers import COCO

from mmdet_custom.apis.eval_plots import coco_precision, per_class_ap, plot_per_class_ap, plot_precision_recall

# Two images, two classes. Class 1 ('disc'): one box per image, both found exactly (AP 1). Class 2 ('block'): two
# boxes in image 1; the detections are a false positive scored 0.9 and one exact hit scored 0.8. Ranked: FP
# (precision 0, recall 0), TP (precision 1/2, recall 1/2). Interpolated precision is 1/2 for the 51 recall
# thresholds 0.00..0.50 and 0 for the 50 above, at every IoU threshold (the hit is exact):
# AP = 51 * 0.5 / 101.
EXPECTED_AP = [1.0, 51 * 0.5 / 101]


@pytest.fixture()
def coco_gt(tmp_path):
    def ann(ann_id, image_id, cat, box):
        return dict(id=ann_id, image_id=image_id, category_id=cat, bbox=box, area=box[2] * box[3], iscrowd=0)
    gt = dict(images=[dict(id=1, file_name='1.jpg', width=100, height=100),
                      dict(id=2, file_name='2.jpg', width=100, height=100)],
              categories=[dict(id=1, name='disc'), dict(id=2, name='block')],
              annotations=[ann(1, 1, 1, [10, 10, 30, 30]), ann(2, 2, 1, [50, 50, 40, 40]),
                           ann(3, 1, 2, [60, 5, 20, 30]), ann(4, 1, 2, [5, 60, 30, 20])])
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(gt))
    return COCO(str(path))


DETECTIONS = [
    dict(image_id=1, category_id=1, bbox=[10, 10, 30, 30], score=0.95),
    dict(image_id=2, category_id=1, bbox=[50, 50, 40, 40], score=0.9),
    dict(image_id=2, category_id=2, bbox=[10, 10, 20, 20], score=0.9),    # no block in image 2: false positive
    dict(image_id=1, category_id=2, bbox=[60, 5, 20, 30], score=0.8),     # exact hit
]


def test_per_class_ap_by_hand(coco_gt):
    precision = coco_precision(coco_gt, DETECTIONS, 'bbox')
    assert precision.shape == (10, 101, 2, 4, 3)
    np.testing.assert_allclose(per_class_ap(precision), EXPECTED_AP, atol=1e-9)
    # the PR curve at IoU 0.5 of the second class: 1/2 up to recall 0.5, 0 beyond
    np.testing.assert_allclose(precision[0, :, 1, 0, -1], [0.5] * 51 + [0.0] * 50)


def test_class_without_ground_truth_is_nan(coco_gt):
    precision = coco_precision(coco_gt, DETECTIONS[:2], 'bbox', cat_ids=[1, 2], img_ids=[2])   # image 2: no block
    aps = per_class_ap(precision)
    assert aps[0] == pytest.approx(1.0) and np.isnan(aps[1])


def test_pictures(coco_gt, tmp_path):
    precision = coco_precision(coco_gt, DETECTIONS, 'bbox')
    names = ['disc', 'block']
    bars = plot_per_class_ap(names, per_class_ap(precision), str(tmp_path / 'ap.png'))
    curves = plot_precision_recall(precision, names, str(tmp_path / 'pr.png'))
    assert matplotlib.image.imread(bars).shape[:2] == (250, 700)
    assert matplotlib.image.imread(curves).shape[:2] == (500, 700)
