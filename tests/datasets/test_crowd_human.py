"""CrowdHuman: AP / MR^-2 / JI on a hand-made example, the dataset's evaluate, and the odgt converter."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import mmdet_custom  # noqa: F401  (registers CrowdHumanDataset)
from mmcv_custom.cli.errors import run_cli
from mmdet_custom.datasets.crowd_human import (
    CrowdHumanDataset,
    crowdhuman_ap,
    image_jaccard,
    jaccard_index,
    log_average_miss_rate,
    match_image,
)
from tools.create_crowd_anno import main as create_crowd_anno

# Image A: two persons and one ignore region; image B: one person. Boxes x1, y1, x2, y2.
GT_A = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 70, 70]], dtype=float)
IGNORE_A = np.array([False, False, True])
DETS_A = np.array([
    [0, 0, 10, 10, 0.9],     # TP (IoU 1 with person 0)
    [21, 0, 31, 10, 0.8],    # TP (IoU 90/110 with person 1)
    [52, 52, 60, 60, 0.7],   # inside the ignore region (IoA 1): dropped
    [80, 80, 90, 90, 0.6],   # FP
])
GT_B = np.array([[0, 0, 10, 10]], dtype=float)
IGNORE_B = np.array([False])
DETS_B = np.array([
    [100, 100, 110, 110, 0.85],  # FP
    [0, 0, 10, 10, 0.5],         # TP
])


def _matches():
    return match_image(DETS_A, GT_A, IGNORE_A) + match_image(DETS_B, GT_B, IGNORE_B)


def test_matching():
    assert match_image(DETS_A, GT_A, IGNORE_A) == [(0.9, 1), (0.8, 1), (0.6, 0)]
    assert match_image(DETS_B, GT_B, IGNORE_B) == [(0.85, 0), (0.5, 1)]
    # a second detection on an already matched person is a false positive
    dup = np.array([[0, 0, 10, 10, 0.9], [0, 0, 10, 10, 0.8]])
    assert match_image(dup, GT_B, IGNORE_B) == [(0.9, 1), (0.8, 0)]


def test_ap_by_hand():
    # score order: TP .9, FP .85, TP .8, FP .6, TP .5; 3 persons
    # (recall, precision): (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2), (1, 3/5)
    # trapezoids: 1/3 * (1/2 + 2/3) / 2 + 1/3 * (1/2 + 3/5) / 2 = 7/36 + 11/60 = 17/45
    assert crowdhuman_ap(_matches(), num_gt=3) == pytest.approx(17 / 45, abs=1e-12)


def test_mr_by_hand():
    # FPPI after each detection (2 images): 0, .5, .5, 1, 1; miss rate: 2/3, 2/3, 1/3, 1/3, 0.
    # References 0.01 .. 0.3162 first reach FPPI .5 (miss rate 2/3); 0.5623 and 1.0 reach FPPI 1 at the 4th point
    # (miss rate 1/3). MR^-2 = exp((7 log(2/3) + 2 log(1/3)) / 9).
    expected = math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9)
    assert log_average_miss_rate(_matches(), num_gt=3, num_images=2) == pytest.approx(expected, abs=1e-12)


def test_ji_by_hand():
    # threshold 0.0: A: k=2, m=2, n=4-1 (the detection on the ignore region does not count) -> 2/3; B: k=1, m=1,
    # n=2 -> 1/2; mean 7/12. At 0.6 (scores > 0.6): A: k=2, m=2, n=2 -> 1; B: only the FP -> 0; mean 1/2.
    # At 0.8: A: k=1, m=2, n=1 -> 1/2; B: 0 -> 1/4. The best threshold gives 7/12.
    assert image_jaccard(DETS_A, GT_A, IGNORE_A, 0.0)[1:] == (2, 2, 3)
    assert image_jaccard(DETS_A, GT_A, IGNORE_A, 0.65)[0] == pytest.approx(1.0, abs=1e-5)
    assert image_jaccard(DETS_B, GT_B, IGNORE_B, 0.6)[0] == 0.0
    per_image = [(DETS_A, GT_A, IGNORE_A), (DETS_B, GT_B, IGNORE_B)]
    assert jaccard_index(per_image) == pytest.approx(7 / 12, abs=1e-5)
    assert jaccard_index(per_image, score_thrs=[0.6]) == pytest.approx(1 / 2, abs=1e-5)


def test_ji_uses_a_maximum_matching():
    # detection 0 overlaps both persons (IoU 9/11 and 7/13), detection 1 only person 0: the greedy (Caltech) match
    # 0 -> person 0 would leave detection 1 unmatched; the maximum matching pairs both
    gt = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], dtype=float)
    dets = np.array([[1, 0, 11, 10, 0.9], [0, 0, 10, 10, 0.8]])
    assert match_image(dets, gt, np.array([False, False])) == [(0.9, 1), (0.8, 0)]
    ratio, k, m, n = image_jaccard(dets, gt, np.array([False, False]), 0.0)
    assert (k, m, n) == (2, 2, 2)
    assert ratio == pytest.approx(1.0, abs=1e-5)


def _write_coco(tmp_path):
    images = [dict(id=1, file_name='a.jpg', width=100, height=100), dict(id=2, file_name='b.jpg', width=120,
                                                                           height=120)]
    anns = [dict(id=i + 1, image_id=1, category_id=1, bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
                 area=float((b[2] - b[0]) * (b[3] - b[1])), iscrowd=int(ig)) for i, (b, ig) in
            enumerate(zip(GT_A, IGNORE_A))]
    anns.append(dict(id=4, image_id=2, category_id=1, bbox=[0, 0, 10, 10], area=100.0, iscrowd=0))
    ann_file = tmp_path / 'annotation_val.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=[dict(id=1, name='person')])))
    return str(ann_file)


def test_dataset_evaluate_returns_the_metrics(tmp_path):
    dataset = CrowdHumanDataset(ann_file=_write_coco(tmp_path), pipeline=[], img_prefix=str(tmp_path),
                                test_mode=True)
    assert dataset.CLASSES == ('person',)
    results = [[DETS_A.astype(np.float32)], [DETS_B.astype(np.float32)]]
    metrics = dataset.evaluate(results, metric=['AP', 'MR', 'JI'])
    assert set(metrics) == {'AP', 'mMR', 'JI'}
    assert metrics['AP'] == pytest.approx(17 / 45, abs=1e-6)
    assert metrics['mMR'] == pytest.approx(math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9), abs=1e-6)
    assert metrics['JI'] == pytest.approx(7 / 12, abs=1e-5)
    # the default metric adds COCO's numbers (pycocotools) and is a dict, not None as upstream
    full = dataset.evaluate(results)
    assert {'bbox_mAP', 'bbox_mAP_50', 'AP', 'mMR', 'JI'} <= set(full)
    assert 0 < full['bbox_mAP_50'] <= 1
    with pytest.raises(KeyError, match='segm'):
        dataset.evaluate(results, metric='segm')


def test_create_crowd_anno(tmp_path, capsys):
    root = tmp_path / 'CrowdHuman'
    (root / 'Images').mkdir(parents=True)
    (root / 'annotations').mkdir()
    Image.new('RGB', (64, 48)).save(root / 'Images' / '1,abc.jpg')
    Image.new('RGB', (32, 40)).save(root / 'Images' / '2,def.jpg')
    records = [
        dict(ID='1,abc', gtboxes=[
            dict(tag='person', fbox=[1, 2, 10, 20], extra=dict(ignore=0)),
            dict(tag='mask', fbox=[5, 5, 8, 8], extra=dict(ignore=1)),
            dict(tag='person', fbox=[3, 3, 0, 5], extra=dict(ignore=0)),     # zero width: skipped
            dict(tag='person', fbox=[0, 0, 4, 6], extra=dict(ignore=1)),     # ignore flag: iscrowd
        ]),
        dict(ID='2,def', gtboxes=[dict(tag='person', fbox=[2, 2, 6, 7])]),
    ]
    (root / 'annotations' / 'annotation_val.odgt').write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    create_crowd_anno(['--dataset', 'CrowdHuman', '--dataset-split', 'val', '--data-root', str(tmp_path)])
    coco = json.loads((root / 'annotations' / 'annotation_val.json').read_text())
    assert coco['categories'] == [dict(id=1, name='person')]
    assert coco['images'] == [dict(id=0, file_name='1,abc.jpg', width=64, height=48),
                              dict(id=1, file_name='2,def.jpg', width=32, height=40)]
    assert [(a['id'], a['image_id'], a['bbox'], a['area'], a['iscrowd']) for a in coco['annotations']] == [
        (1, 0, [1, 2, 10, 20], 200, 0), (2, 0, [5, 5, 8, 8], 64, 1), (3, 0, [0, 0, 4, 6], 24, 1),
        (4, 1, [2, 2, 6, 7], 42, 0)]
    # a missing split: one line naming the file
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: create_crowd_anno(['--dataset-split', 'test', '--data-root', str(tmp_path)]),
                'create_crowd_anno.py')
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f'create_crowd_anno.py: error: annotation file {tmp_path}/CrowdHuman/annotations/annotation_test.odgt '
        'does not exist (check --dataset / --dataset-split / --data-root)']
