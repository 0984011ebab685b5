"""check_dataset_files: each dataset config with a missing file fails with one line naming file and field."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmcv import Config

from mmcv_custom.cli.dataset_checks import DatasetFileError, check_dataset_files

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize('config, split, field, path', [
    ('configs/coco/mask_rcnn_internimage_t_fpn_1x_coco.py', 'train', 'data.train.ann_file',
     'data/coco/annotations/instances_train2017.json'),
    ('configs/coco/cascade_internimage_l_fpn_3x_coco.py', 'val', 'data.val.ann_file',
     'data/coco/annotations/instances_val2017.json'),
    ('configs/crowd_human/cascade_internimage_xl_fpn_3x_crowd_human.py', 'test', 'data.test.ann_file',
     'data/CrowdHuman/annotations/annotation_val.json'),
    ('configs/_base_/datasets/lvis_v1_instance.py', 'train', 'data.train.dataset.ann_file',
     'data/lvis_v1/annotations/lvis_v1_train.json'),
    ('configs/_base_/datasets/lvis_v1_instance_minival.py', 'val', 'data.val.ann_file',
     'data/lvis_v1/annotations/lvis_v1_minival.json'),
    ('configs/_base_/datasets/voc0712.py', 'train', 'data.train.dataset.ann_file.0',
     'data/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt'),
    ('configs/_base_/datasets/openimages_detection.py', 'train', 'data.train.ann_file',
     'data/OpenImages/annotations/oidv6-train-annotations-bbox.csv'),
])
def test_missing_annotation_file(tmp_path, monkeypatch, config, split, field, path):
    cfg = Config.fromfile(str(REPO / config))
    monkeypatch.chdir(tmp_path)  # relative data paths resolve to nothing here
    with pytest.raises(DatasetFileError) as info:
        check_dataset_files(cfg.data[split], f'data.{split}', config_file=config)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(f'{field}: file {path} does not exist')
    assert config in message and f'--cfg-options {field}=PATH' in message


def test_present_files_pass_and_missing_image_folder_is_named(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text('{}')
    cfg = dict(type='CocoDataset', ann_file=str(ann), img_prefix=str(tmp_path))
    check_dataset_files(cfg, 'data.val')
    check_dataset_files(dict(type='RepeatDataset', times=2, dataset=cfg), 'data.train')
    with pytest.raises(DatasetFileError, match=r'^data\.val\.img_prefix: image folder .*nowhere does not exist'):
        check_dataset_files({**cfg, 'img_prefix': str(tmp_path / 'nowhere')}, 'data.val')
    check_dataset_files({**cfg, 'img_prefix': str(tmp_path / 'nowhere')}, 'data.val', check_dirs=False)
    # remote paths are left to the file client
    check_dataset_files({**cfg, 'ann_file': 's3://bucket/ann.json'}, 'data.val')
