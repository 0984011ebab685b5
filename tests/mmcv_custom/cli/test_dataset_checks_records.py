"""COCO-format annotation records checked before a run (mmcv_custom/cli/dataset_checks.py): what would otherwise fail
mid-training or in COCOeval without naming the file, or silently shift labels or train on empty images."""
from __future__ import annotations

import copy
import json
import re

import pytest

from mmcv_custom.cli.checks import check_annotation_files
from mmcv_custom.cli.dataset_checks import check_coco_records
from mmcv_custom.cli.errors import UserError

GOOD = {
    'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 64, 'width': 64}],
    'annotations': [
        {'id': 7, 'image_id': 1, 'category_id': 1, 'bbox': [1, 2, 10, 12], 'area': 120, 'iscrowd': 0,
         'segmentation': [[1, 2, 11, 2, 11, 14]]},
        {'id': 8, 'image_id': 1, 'category_id': 2, 'bbox': [20, 20, 5, 5], 'area': 25, 'iscrowd': 0,
         'segmentation': [[20, 20, 25, 20, 25, 25]]},
    ],
    'categories': [{'id': 1, 'name': 'circle'}, {'id': 2, 'name': 'square'}],
}
WHERE = 'data.val: annotation file ann.json'


def broken(edit) -> dict:
    content = copy.deepcopy(GOOD)
    edit(content)
    return content


def exactly(line: str):
    return pytest.raises(UserError, match=f'^{re.escape(line)}$')


def test_good_records_pass():
    check_coco_records(GOOD, 'ann.json', 'data.val', need_masks=True, evaluated=True, training=True,
                       classes=('square', 'circle'))


@pytest.mark.parametrize('key', ['area', 'iscrowd', 'segmentation', 'bbox', 'category_id'])
def test_record_without_a_key_the_run_reads(key):
    content = broken(lambda c: c['annotations'][1].pop(key))
    with exactly(f'{WHERE}: annotations[1] (id 8) has no "{key}"'):
        check_coco_records(content, 'ann.json', 'data.val', need_masks=True, evaluated=True)


def test_keys_only_some_runs_read():
    content = broken(lambda c: [ann.pop(key) for ann in c['annotations'] for key in ('iscrowd', 'segmentation')])
    check_coco_records(content, 'ann.json', 'data.train', need_masks=False, evaluated=False)  # mmdet: iscrowd optional


@pytest.mark.parametrize('bbox', [[1, 2, 3], [1, 2, 3, 'x'], 'box', [1, 2, 3, 4, 5]])
def test_bbox_that_is_not_four_numbers(bbox):
    content = broken(lambda c: c['annotations'][0].update(bbox=bbox))
    with exactly(f'{WHERE}: annotations[0] (id 7): "bbox" must be 4 numbers [x, y, width, height], got {bbox!r}'):
        check_coco_records(content, 'ann.json', 'data.val')


def test_image_record_and_category_id():
    with exactly(f'{WHERE}: images[0] (id 1) has no "width"'):
        check_coco_records(broken(lambda c: c['images'][0].pop('width')), 'ann.json', 'data.val')
    with exactly(f'{WHERE}: annotations[0] (id 7): "category_id" 5 is not the id of any category'):
        check_coco_records(broken(lambda c: c['annotations'][0].update(category_id=5)), 'ann.json', 'data.val')


def test_all_degenerate_boxes_in_a_training_file():
    def degenerate(content):
        content['annotations'][0]['bbox'] = [1, 2, 0.5, 12]
        content['annotations'][1]['area'] = 0
    content = broken(degenerate)
    with exactly('data.train: annotation file ann.json: all 2 boxes are degenerate (width or height < 1 pixel, or '
                 'area <= 0): mmdet drops them and would train on empty images'):
        check_coco_records(content, 'ann.json', 'data.train', training=True)
    check_coco_records(content, 'ann.json', 'data.val')   # evaluation: those boxes are simply ignored
    check_coco_records(broken(lambda c: c['annotations'][0].update(area=0)), 'ann.json', 'data.train',
                       training=True)   # one good box left: trains


def test_misspelt_class_name():
    with exactly("data.train.classes: 'sqare' is not a category of ann.json (did you mean 'square'? categories: "
                 "circle, square)"):
        check_coco_records(GOOD, 'ann.json', 'data.train', classes=('circle', 'sqare'))


def test_check_annotation_files_reads_the_records_and_empty_ann_file(tmp_path):
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(broken(lambda c: c['annotations'][0].pop('area'))))
    data_cfg = dict(type='CocoDataset', ann_file=str(ann_file), img_prefix=str(tmp_path),
                    pipeline=[dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    with exactly(f'data.train: annotation file {ann_file}: annotations[0] (id 7) has no "area"'):
        check_annotation_files(data_cfg, 'data.train', training=True)
    with exactly('data.train.ann_file is empty (set data.train.ann_file in cfg.py, or --cfg-options '
                 'data.train.ann_file=PATH)'):
        check_annotation_files(dict(data_cfg, ann_file=''), 'data.train', 'cfg.py')
    ann_file.write_text(json.dumps(broken(lambda c: c['annotations'][0].pop('segmentation'))))
    with exactly(f'data.train: annotation file {ann_file}: annotations[0] (id 7) has no "segmentation"'):
        check_annotation_files(data_cfg, 'data.train')   # the pipeline loads masks
