"""The custom-dataset config templates (configs/custom/) on datasets converted by to_coco.py: the heads follow
`classes`, the pipelines load the converted annotations (masks from LabelMe polygons; boxes only from VOC)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmdet.datasets import build_dataset
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401
from mmcv_custom.cli.checks import load_config
from tools.dataset_converters.to_coco import main as to_coco

REPO = Path(__file__).resolve().parents[2]
MASK_TEMPLATE = REPO / 'configs/custom/mask_rcnn_internimage_t_fpn_1x_custom.py'
BOX_TEMPLATE = REPO / 'configs/custom/faster_rcnn_internimage_t_fpn_1x_custom.py'


def labelme_dataset(root: Path) -> None:
    (root / 'images').mkdir(parents=True)
    (root / 'labelme').mkdir()
    for i in range(3):
        cv2.imwrite(str(root / 'images' / f'{i}.jpg'), np.full((60, 80, 3), 40 * i, np.uint8))
        shapes = [dict(label='leaf', shape_type='polygon', points=[[5, 5], [40, 5], [40, 30]]),
                  dict(label='stone', shape_type='rectangle', points=[[50, 20], [70, 50]])]
        (root / 'labelme' / f'{i}.json').write_text(json.dumps(dict(
            imagePath=f'../images/{i}.jpg', imageWidth=80, imageHeight=60, shapes=shapes)))
    to_coco(['labelme', '--json-dir', str(root / 'labelme'), '--img-dir', str(root / 'images'),
             '--out', str(root / 'annotations' / 'instances.json'), '--val-ratio', '0.34'])


def options(root: Path, classes: tuple[str, ...]) -> dict:
    opts = {'classes': classes, 'model.backbone.depths': [1, 1, 1, 1]}
    for split, part in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        opts.update({f'data.{split}.classes': classes, f'data.{split}.img_prefix': f'{root}/images/',
                     f'data.{split}.ann_file': f'{root}/annotations/instances_{part}.json'})
    return opts


@pytest.mark.parametrize('template', [MASK_TEMPLATE, BOX_TEMPLATE], ids=['mask_rcnn', 'faster_rcnn'])
def test_template_trains_on_a_converted_dataset(template, tmp_path):
    torch.set_num_threads(1)
    labelme_dataset(tmp_path)
    classes = ('leaf', 'stone')
    cfg = load_config(str(template), options(tmp_path, classes))
    # the template's own classes drive the heads: with the override, 2 classes everywhere
    assert tuple(cfg.data.train.classes) == classes
    dataset = build_dataset(cfg.data.train)
    assert dataset.CLASSES == classes and len(dataset) == 2
    item = dataset[0]
    assert item['gt_labels'].data.tolist() == [0, 1]
    with_masks = template == MASK_TEMPLATE
    assert ('gt_masks' in item) == with_masks
    cfg.model.roi_head.bbox_head.num_classes = len(classes)  # as the template writes it: num_classes=len(classes)
    if with_masks:
        cfg.model.roi_head.mask_head.num_classes = len(classes)
    model = build_detector(cfg.model)
    model.train()
    batch = {key: [value.data] if key == 'img_metas' else value.data for key, value in item.items()}
    batch['img'] = batch['img'][None]
    batch['gt_bboxes'], batch['gt_labels'] = [batch['gt_bboxes']], [batch['gt_labels']]
    if with_masks:
        batch['gt_masks'] = [batch['gt_masks']]
    losses = model(return_loss=True, **batch)
    assert ('loss_mask' in losses) == with_masks
    assert all(torch.isfinite(v).all() for value in losses.values()
               for v in (value if isinstance(value, list) else [value]))


def test_templates_size_the_heads_by_their_classes():
    for template in (MASK_TEMPLATE, BOX_TEMPLATE):
        cfg = load_config(str(template))
        assert cfg.model.roi_head.bbox_head.num_classes == len(cfg.classes) == 2
        assert all(tuple(cfg.data[split].classes) == tuple(cfg.classes) for split in ('train', 'val', 'test'))
    assert load_config(str(MASK_TEMPLATE)).model.roi_head.mask_head.num_classes == 2
    box = load_config(str(BOX_TEMPLATE))
    assert box.model.type == 'FasterRCNN' and box.model.roi_head.mask_head is None


def test_a_class_mismatch_is_refused_before_training(tmp_path):
    """The checks train.py runs (mmcv_custom/cli/checks.py) on a converted dataset and a template: a class the
    annotation file lacks, and heads sized for fewer classes than `classes`, each one line naming both sides."""
    from mmcv_custom.cli.checks import check_annotation_files, check_classes_match_heads
    from mmcv_custom.cli.errors import UserError

    labelme_dataset(tmp_path)
    good = load_config(str(MASK_TEMPLATE), options(tmp_path, ('leaf', 'stone')))
    check_annotation_files(good.data.train, 'data.train', str(MASK_TEMPLATE), training=True)
    check_classes_match_heads(good, 'train')
    wrong_name = load_config(str(MASK_TEMPLATE), options(tmp_path, ('leaf', 'rock')))
    with pytest.raises(UserError, match=r"data.train.classes: 'rock' is not a category of .*instances_train.json"):
        check_annotation_files(wrong_name.data.train, 'data.train', str(MASK_TEMPLATE), training=True)
    more = load_config(str(MASK_TEMPLATE), options(tmp_path, ('leaf', 'stone', 'moss')))  # heads still sized 2
    with pytest.raises(UserError, match=r'num_classes is 2, but data.train.classes has 3 classes'):
        check_classes_match_heads(more, 'train')
