"""mmcv_custom/numpy_compat.py: each patch's symptom on the unpatched module, and the fix once patched.

The builtin aliases (``np.int``, ...) are gone from numpy 1.24 on, so these hold on both stacks: numpy 1.26.4 on
Python 3.11 and numpy 2 on Python 3.12+.
"""
import importlib
import pickle

import numpy
import pytest

import mmcv_custom  # noqa: F401  (applies the patches)
from mmcv_custom import numpy_compat


def test_numpy_itself_has_no_builtin_aliases():
    """The symptom's cause, on both stacks; the patch must not put the aliases back into numpy for everyone."""
    for name in ('int', 'float', 'object', 'str', 'complex'):   # numpy 2 has np.bool again, its own bool type
        assert not hasattr(numpy, name), name
    with pytest.raises(AttributeError, match="has no attribute 'int'"):
        numpy.int  # noqa: B018


def _patched_modules() -> list:
    """The modules of ALIAS_USERS that are installed (the optional ones may not be)."""
    modules = []
    for name in numpy_compat.ALIAS_USERS:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            assert name in numpy_compat.OPTIONAL_ALIAS_USERS, name
    return modules


def test_each_patched_module_sees_the_aliases_and_the_rest_of_numpy():
    assert len(_patched_modules()) >= 3
    for module in _patched_modules():
        np = module.np
        module_name = module.__name__
        assert isinstance(np, numpy_compat.NumpyWithBuiltinAliases), module_name
        assert np.int is int and np.float is float and np.object is object
        assert np.bool is getattr(numpy, 'bool', bool)   # numpy 2's own np.bool wins where it exists
        assert np.ndarray is numpy.ndarray and np.where is numpy.where and np.int64 is numpy.int64
        with pytest.raises(AttributeError):
            np.no_such_numpy_name  # noqa: B018


def test_patches_are_idempotent():
    views = [module.np for module in _patched_modules()]
    numpy_compat.apply_patches()
    assert [module.np for module in _patched_modules()] == views


# --- CustomDataset.get_cat_ids, and ClassBalancedDataset over a custom dataset ------------------------------

@pytest.fixture
def custom_dataset(tmp_path):
    """A custom dataset in mmdet's middle format: class 0 in images 0-2, class 1 (rare) in image 3 only."""
    from mmdet.datasets import CustomDataset

    def image(index, labels):
        return dict(filename=f'{index}.jpg', width=64, height=48,
                    ann=dict(bboxes=numpy.array([[1, 1, 20, 20]] * len(labels), dtype=numpy.float32),
                             labels=numpy.array(labels, dtype=numpy.int64)))

    ann_file = tmp_path / 'ann.pkl'
    ann_file.write_bytes(pickle.dumps([image(0, [0]), image(1, [0, 0]), image(2, [0]), image(3, [1])]))
    return CustomDataset(str(ann_file), pipeline=[], classes=('common', 'rare'), img_prefix=str(tmp_path))


def test_unpatched_custom_dataset_get_cat_ids_fails(custom_dataset, monkeypatch):
    """The symptom: mmdet 2.28.2's CustomDataset.get_cat_ids calls np.int."""
    import mmdet.datasets.custom as custom_module
    monkeypatch.setattr(custom_module, 'np', numpy)
    with pytest.raises(AttributeError, match="has no attribute 'int'"):
        custom_dataset.get_cat_ids(1)


def test_custom_dataset_get_cat_ids(custom_dataset):
    assert custom_dataset.get_cat_ids(1) == [0, 0]
    assert custom_dataset.get_cat_ids(3) == [1]
    assert all(type(label) is int for label in custom_dataset.get_cat_ids(1))


def test_class_balanced_dataset_over_a_custom_dataset(custom_dataset):
    """Repeat factors (LVIS paper, mmdet's ClassBalancedDataset): f(common) = 3/4, f(rare) = 1/4; with threshold
    0.5, r(common) = max(1, sqrt(0.5 / 0.75)) = 1 and r(rare) = sqrt(0.5 / 0.25) = 1.41, so image 3 is repeated
    ceil(1.41) = 2 times and the others once."""
    from mmdet.datasets import ClassBalancedDataset

    balanced = ClassBalancedDataset(custom_dataset, oversample_thr=0.5)
    assert len(balanced) == 5
    assert sorted(balanced.repeat_indices) == [0, 1, 2, 3, 3]


# --- OpenImagesDataset.get_cat_ids ------------------------------------------------------------------------

def test_openimages_get_cat_ids():
    from mmdet.datasets import OpenImagesDataset

    dataset = OpenImagesDataset.__new__(OpenImagesDataset)  # only get_ann_info is needed: no annotation files
    dataset.get_ann_info = lambda idx: dict(labels=numpy.array([3, 1], dtype=numpy.int64))
    assert dataset.get_cat_ids(0) == [3, 1]


# --- IoUBalancedNegSampler (Libra R-CNN) --------------------------------------------------------------------

def test_iou_balanced_neg_sampler_sample_via_interval():
    """Every bin holds at most num_expected / num_bins boxes, so each takes the ``np.array(..., dtype=np.int)``
    branch, and all six boxes come back (five from the bins, the sixth as the extra)."""
    from mmdet.core.bbox.samplers import IoUBalancedNegSampler

    sampler = IoUBalancedNegSampler(num=12, pos_fraction=0.5, floor_thr=0, floor_fraction=0.5, num_bins=3)
    max_overlaps = numpy.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    sampled = sampler.sample_via_interval(max_overlaps, set(range(6)), num_expected=6)
    assert sorted(sampled.tolist()) == [0, 1, 2, 3, 4, 5]
    assert numpy.issubdtype(sampled.dtype, numpy.integer)
