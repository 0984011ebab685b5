"""VOC XML, YOLO txt and LabelMe JSON -> COCO: tiny files written here, expected boxes worked out by hand."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmcv_custom.cli.errors import UserError
from tools.dataset_converters.to_coco import main

VOC_XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>40</width><height>30</height><depth>3</depth></size>
  <object><name>cat</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
  <object><name>dog</name><difficult>1</difficult>
    <bndbox><xmin>5</xmin><ymin>5</ymin><xmax>45</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def _image(path, width=40, height=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))


def _load(path):
    with open(path) as f:
        coco = json.load(f)
    COCO(str(path))  # pycocotools accepts it
    return coco


def test_voc_boxes_are_zero_based_difficult_is_crowd_and_clipped(tmp_path):
    ann_dir = tmp_path / 'Annotations'
    ann_dir.mkdir()
    for name in ('a', 'b'):
        (ann_dir / f'{name}.xml').write_text(VOC_XML.format(name=name))
    out = tmp_path / 'voc.json'
    main(['voc', '--ann-dir', str(ann_dir), '--out', str(out), '--classes', 'dog,cat'])
    coco = _load(out)
    assert [c['name'] for c in coco['categories']] == ['dog', 'cat'] and [c['id'] for c in coco['categories']] == [1, 2]
    assert [im['file_name'] for im in coco['images']] == ['a.jpg', 'b.jpg']
    assert coco['images'][0]['width'] == 40 and coco['images'][0]['height'] == 30
    first, second = coco['annotations'][:2]
    # VOC xmin=1..xmax=10 (inclusive, 1-based) covers pixels 0..9: x=0, w=10
    assert first['bbox'] == [0.0, 1.0, 10.0, 11.0] and first['category_id'] == 2 and first['iscrowd'] == 0
    assert first['area'] == 110.0
    # xmax=45 lies outside the 40-px image: clipped to 40
    assert second['bbox'] == [4.0, 4.0, 36.0, 16.0] and second['category_id'] == 1 and second['iscrowd'] == 1
    assert len(coco['annotations']) == 4 and [a['id'] for a in coco['annotations']] == [1, 2, 3, 4]


def test_voc_unknown_class_and_bad_xml_are_one_line_errors(tmp_path):
    ann_dir = tmp_path / 'Annotations'
    ann_dir.mkdir()
    (ann_dir / 'a.xml').write_text(VOC_XML.format(name='a'))
    with pytest.raises(UserError, match=r"a\.xml: class 'dog' is not in --classes \(cat\)"):
        main(['voc', '--ann-dir', str(ann_dir), '--out', str(tmp_path / 'x.json'), '--classes', 'cat'])
    (ann_dir / 'b.xml').write_text('<annotation><filename>b.jpg')
    with pytest.raises(UserError, match=r'b\.xml: not valid XML'):
        main(['voc', '--ann-dir', str(ann_dir), '--out', str(tmp_path / 'x.json')])


def test_yolo_boxes_and_polygons_scale_by_the_image_size(tmp_path):
    _image(tmp_path / 'images' / 'train' / 'a.png', width=100, height=50)
    _image(tmp_path / 'images' / 'train' / 'b.png', width=100, height=50)  # no label file: no objects
    labels = tmp_path / 'labels' / 'train'
    labels.mkdir(parents=True)
    (labels / 'a.txt').write_text('1 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.3 0.2 0.3 0.6\n')
    (tmp_path / 'classes.txt').write_text('circle\nsquare\n')
    out = tmp_path / 'yolo.json'
    main(['yolo', '--img-dir', str(tmp_path / 'images' / 'train'), '--classes', str(tmp_path / 'classes.txt'),
          '--out', str(out)])
    coco = _load(out)
    assert [im['file_name'] for im in coco['images']] == ['a.png', 'b.png']
    box, poly = coco['annotations']
    # cx=50, cy=25, w=20, h=20 in pixels
    assert box['bbox'] == pytest.approx([40.0, 15.0, 20.0, 20.0]) and box['category_id'] == 2
    assert 'segmentation' not in box
    assert poly['segmentation'] == [pytest.approx([10.0, 10.0, 30.0, 10.0, 30.0, 30.0])]
    assert poly['bbox'] == pytest.approx([10.0, 10.0, 20.0, 20.0]) and poly['category_id'] == 1
    assert poly['area'] == pytest.approx(200.0)  # right triangle with legs 20 and 20


def test_yolo_needs_classes_and_names_a_bad_line(tmp_path):
    _image(tmp_path / 'images' / 'a.jpg')
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'labels' / 'a.txt').write_text('3 0.5 0.5 0.2 0.2\n')
    args = ['yolo', '--img-dir', str(tmp_path / 'images'), '--out', str(tmp_path / 'x.json')]
    with pytest.raises(UserError, match='--classes is required'):
        main(args)
    with pytest.raises(UserError, match=r'a\.txt:1: class index 3 is outside --classes \(0\.\.1\)'):
        main([*args, '--classes', 'a,b'])


def test_labelme_polygons_rectangles_groups_and_skipped_lines(tmp_path, capsys):
    _image(tmp_path / 'img' / 'x.jpg', width=64, height=48)
    record = dict(imagePath='../img/x.jpg', imageWidth=64, imageHeight=48, shapes=[
        dict(label='leaf', shape_type='polygon', points=[[2, 2], [12, 2], [12, 8]], group_id=None),
        dict(label='box', shape_type='rectangle', points=[[30, 20], [10, 40]], group_id=None),
        dict(label='leaf', shape_type='polygon', points=[[40, 0], [50, 0], [50, 10], [40, 10]], group_id=7),
        dict(label='leaf', shape_type='polygon', points=[[55, 20], [60, 20], [60, 30]], group_id=7),
        dict(label='edge', shape_type='line', points=[[0, 0], [5, 5]], group_id=None),
    ])
    json_dir = tmp_path / 'labelme'
    json_dir.mkdir()
    (json_dir / 'x.json').write_text(json.dumps(record))
    out = tmp_path / 'lm.json'
    main(['labelme', '--json-dir', str(json_dir), '--img-dir', str(tmp_path / 'img'), '--out', str(out)])
    coco = _load(out)
    assert coco['images'] == [dict(id=1, file_name='x.jpg', width=64, height=48)]
    assert [c['name'] for c in coco['categories']] == ['box', 'leaf']  # sorted without --classes
    triangle, rect, grouped = coco['annotations']
    assert triangle['bbox'] == [2.0, 2.0, 10.0, 6.0] and triangle['area'] == 30.0 and triangle['category_id'] == 2
    assert rect['bbox'] == [10.0, 20.0, 20.0, 20.0] and rect['category_id'] == 1
    assert len(grouped['segmentation']) == 2 and grouped['bbox'] == [40.0, 0.0, 20.0, 30.0]
    assert grouped['area'] == 100.0 + 25.0
    assert 'skipped 1 LabelMe line shapes' in capsys.readouterr().out


def test_val_ratio_splits_images_without_overlap(tmp_path):
    ann_dir = tmp_path / 'Annotations'
    ann_dir.mkdir()
    for i in range(10):
        (ann_dir / f'{i}.xml').write_text(VOC_XML.format(name=i))
    train, val = main(['voc', '--ann-dir', str(ann_dir), '--out', str(tmp_path / 'inst.json'), '--val-ratio', '0.2'])
    assert train.endswith('inst_train.json') and val.endswith('inst_val.json')
    train_coco, val_coco = _load(train), _load(val)
    names = [{im['file_name'] for im in c['images']} for c in (train_coco, val_coco)]
    assert len(names[0]) == 8 and len(names[1]) == 2 and not names[0] & names[1]
    for coco in (train_coco, val_coco):  # ids renumbered from 1 and annotations follow their images
        assert [im['id'] for im in coco['images']] == list(range(1, len(coco['images']) + 1))
        assert {a['image_id'] for a in coco['annotations']} == {im['id'] for im in coco['images']}
