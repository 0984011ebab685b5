"""GuardedLoadImageFromFile: a registered transform configs can name; skips or names an undecodable image; and the
config edit train.py / test.py make with it."""
from __future__ import annotations

import copy

import mmcv
import numpy as np
import pytest
from mmdet.datasets.builder import PIPELINES

import mmdet_custom  # noqa: F401  (registers the transform)
from mmdet_custom.datasets.pipelines import GuardedLoadImageFromFile, UnreadableImageError, guard_image_loading


def _results(folder, name):
    return dict(img_prefix=str(folder), img_info=dict(filename=name))


@pytest.fixture()
def images(tmp_path):
    mmcv.imwrite(np.full((8, 10, 3), 7, dtype=np.uint8), str(tmp_path / 'good.png'))
    (tmp_path / 'bad.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return tmp_path


def test_built_from_the_registry_by_name(images):
    transform = PIPELINES.build(dict(type='GuardedLoadImageFromFile', on_error='skip', to_float32=True))
    assert type(transform) is GuardedLoadImageFromFile and transform.on_error == 'skip'
    loaded = transform(_results(images, 'good.png'))
    assert loaded['img'].shape == (8, 10, 3) and loaded['img'].dtype == np.float32 and loaded['img'][0, 0, 0] == 7
    assert "on_error='skip'" in repr(transform)


def test_unreadable_image_raises_with_its_name_or_is_skipped(images):
    with pytest.raises(UnreadableImageError, match=f'image file {images}/bad.jpg cannot be read or decoded'):
        GuardedLoadImageFromFile()(_results(images, 'bad.jpg'))
    with pytest.warns(UserWarning, match=f'skipping unreadable image {images}/bad.jpg'):
        assert GuardedLoadImageFromFile(on_error='skip')(_results(images, 'bad.jpg')) is None


def test_bad_on_error_value():
    with pytest.raises(ValueError, match="on_error must be one of .'raise', 'skip'., got 'ignore'"):
        GuardedLoadImageFromFile(on_error='ignore')


def test_guard_image_loading_edits_every_pipeline_of_a_dataset_config():
    load = dict(type='LoadImageFromFile', to_float32=True)
    data_cfg = dict(type='RepeatDataset', times=2, dataset=dict(
        type='ConcatDataset', datasets=[dict(type='CocoDataset', pipeline=[copy.deepcopy(load), dict(type='Resize')]),
                                        dict(type='CocoDataset', pipeline=[copy.deepcopy(load)])]))
    assert guard_image_loading(data_cfg, on_error='skip') == 2
    pipelines = [ds['pipeline'] for ds in data_cfg['dataset']['datasets']]
    assert pipelines[0] == [dict(type='GuardedLoadImageFromFile', to_float32=True, on_error='skip'),
                            dict(type='Resize')]
    assert pipelines[1][0]['type'] == 'GuardedLoadImageFromFile'
    assert guard_image_loading(data_cfg, on_error='skip') == 0   # already guarded
