"""LVIS v1 through the LVIS configs' datasets: the ``lvis`` package is installed, a tiny LVIS v1 annotation file written
here loads as the configs' train (``ClassBalancedDataset`` over ``LVISV1Dataset``) and test datasets, and
``LVISEval`` (its ``np.float`` patched, ``mmcv_custom/numpy_compat.py``) gives the AP worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mmcv import Config
from mmdet.datasets import LVISV1Dataset, build_dataset

REPO = Path(__file__).resolve().parents[2]
LVIS_CONFIG = REPO / 'configs/lvis/dino_4scale_cbinternimage_h_objects365_lvis_val_ss.py'
# image id -> (category id, box [x, y, w, h]) of its one ground-truth object
OBJECTS = {1: (1, [10.0, 10.0, 40.0, 30.0]), 2: (2, [5.0, 20.0, 50.0, 40.0])}


def write_lvis_file(path: Path) -> None:
    """A 2-image LVIS v1 file with all 1203 categories (mmdet maps result index i to the i-th category id): category 1
    ('aerosol_can') frequent, 2 ('air_conditioner') rare, the rest common. Each image is exhaustively labelled and
    names the other image's category as a negative, so a detection of it there counts as a false positive."""
    categories = [dict(id=i + 1, name=name, frequency='f' if i == 0 else 'r' if i == 1 else 'c',
                       image_count=1, instance_count=1, synset=f'{name}.n.01')
                  for i, name in enumerate(LVISV1Dataset.CLASSES)]
    images, annotations = [], []
    for image_id, (category_id, (x, y, w, h)) in OBJECTS.items():
        other = 2 if category_id == 1 else 1
        images.append(dict(id=image_id, width=64, height=64, file_name=f'val2017/{image_id:012d}.jpg',
                           coco_url=f'http://images.cocodataset.org/val2017/{image_id:012d}.jpg',
                           neg_category_ids=[other], not_exhaustive_category_ids=[]))
        annotations.append(dict(id=image_id, image_id=image_id, category_id=category_id, bbox=[x, y, w, h],
                                area=w * h, segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    path.write_text(json.dumps(dict(info={}, licenses=[], images=images, annotations=annotations,
                                    categories=categories)))


@pytest.fixture(scope='module')
def lvis_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('lvis') / 'lvis_v1_tiny.json'
    write_lvis_file(path)
    return path


def config_dataset(split: str, ann_file: Path):
    cfg = Config.fromfile(str(LVIS_CONFIG))
    data_cfg = cfg.data[split]
    leaf = data_cfg.dataset if data_cfg.type == 'ClassBalancedDataset' else data_cfg
    leaf.ann_file, leaf.img_prefix = str(ann_file), str(ann_file.parent) + '/'
    if split == 'test':
        data_cfg.test_mode = True
    return build_dataset(data_cfg)


def test_the_lvis_package_is_installed():
    import lvis
    from lvis import LVISEval, LVISResults  # noqa: F401
    assert Path(lvis.__file__).is_file()


def test_the_configs_train_dataset_loads_an_lvis_v1_file(lvis_file):
    dataset = config_dataset('train', lvis_file)
    assert type(dataset).__name__ == 'ClassBalancedDataset'
    inner = dataset.dataset
    assert isinstance(inner, LVISV1Dataset) and len(inner.CLASSES) == 1203
    assert [info['filename'] for info in inner.data_infos] == ['val2017/000000000001.jpg', 'val2017/000000000002.jpg']
    ann = inner.get_ann_info(1)
    np.testing.assert_allclose(ann['bboxes'], [[5.0, 20.0, 55.0, 60.0]])  # xywh -> xyxy
    assert ann['labels'].tolist() == [1]   # category id 2 is label 1


def detections(boxes_by_image: dict[int, dict[int, list[float]]]) -> list[list[np.ndarray]]:
    """mmdet results (per image, per class: (n, 5) xyxy+score) from {image id: {label: xywh box}}."""
    results = []
    for image_id in sorted(OBJECTS):
        per_class = [np.zeros((0, 5), np.float32) for _ in range(1203)]
        for label, (x, y, w, h) in boxes_by_image.get(image_id, {}).items():
            per_class[label] = np.array([[x, y, x + w, y + h, 0.9]], np.float32)
        results.append(per_class)
    return results


def test_lvis_eval_of_perfect_detections_is_one(lvis_file):
    dataset = config_dataset('test', lvis_file)
    metrics = dataset.evaluate(detections({1: {0: OBJECTS[1][1]}, 2: {1: OBJECTS[2][1]}}), metric='bbox')
    assert metrics['bbox_AP'] == pytest.approx(1.0)


def test_lvis_eval_averages_over_categories_and_frequency_groups(lvis_file):
    # image 1: its 'aerosol_can' found exactly; image 2: its 'air_conditioner' detected in an empty corner (IoU 0)
    # -> AP 1 for the frequent category, 0 for the rare one: AP 0.5, APf 1, APr 0 (no common category has ground truth)
    dataset = config_dataset('test', lvis_file)
    metrics = dataset.evaluate(detections({1: {0: OBJECTS[1][1]}, 2: {1: [0.0, 0.0, 4.0, 4.0]}}), metric='bbox')
    assert metrics['bbox_AP'] == pytest.approx(0.5)
    assert metrics['bbox_APf'] == pytest.approx(1.0)
    assert metrics['bbox_APr'] == pytest.approx(0.0)
