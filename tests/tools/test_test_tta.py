"""test.py --tta end to end: the tiny trained Mask R-CNN evaluated with two views (its scale plus a flip) through
mmdet's aug_test, as users run it."""
from __future__ import annotations

import pickle


def test_test_py_tta_evaluates_the_merged_views(helpers, trained_run, shapes_data, tmp_path):
    options = [o for o in helpers.tiny_cfg_options(shapes_data) if not o.startswith('data.train')]
    out = tmp_path / 'results.pkl'
    result = helpers.run_script(['test.py', helpers.demo_config, str(trained_run / 'latest.pth'), '--tta',
                                 '--eval', 'bbox', 'segm', '--out', str(out), '--cfg-options', *options])
    assert 'test-time augmentation: 2 views per image (scales (64, 64), flip horizontal)' in result.stdout
    assert "'bbox_mAP'" in result.stdout and "'segm_mAP'" in result.stdout
    with open(out, 'rb') as f:
        outputs = pickle.load(f)
    assert len(outputs) == 6  # the val images, one merged result each
    for bbox_result, segm_result in outputs:
        assert len(bbox_result) == len(segm_result) == 4
        for boxes, masks in zip(bbox_result, segm_result):
            assert len(boxes) == len(masks)
            assert all(list(mask['size']) == [64, 64] for mask in masks)  # RLE, in the original image's size
