"""Patches for mmcv 1.7 / mmdet 2.28 on today's numpy (1.24+, and numpy 2 on Python 3.12+), applied when
``mmcv_custom`` is imported.

numpy 1.24 removed the aliases of the builtins (``np.int``, ``np.float``, ``np.bool``, ``np.object``, ``np.str``,
``np.complex``), deprecated since 1.20; mmcv 1.7.2 and mmdet 2.28.2 still use them in a few places, each of which
stops with ``AttributeError: module 'numpy' has no attribute 'int'`` on the pinned numpy 1.26.4 and on numpy 2
alike. Rather than putting the aliases back into numpy for every library, each of those modules gets a view of numpy
that has them (:class:`NumpyWithBuiltinAliases`); nothing else changes. Each entry of :data:`ALIAS_USERS` names the
symptom; ``tests/mmcv_custom/test_numpy_compat.py`` shows each symptom on the unpatched module and the fix.
Patches are idempotent.
"""
from __future__ import annotations

import importlib
import types
import warnings

import numpy

# What numpy < 1.24 meant by each removed alias: the builtin itself. numpy 2 has ``np.bool`` again (its own bool
# type, which works wherever the builtin did), so numpy's own name always comes first.
BUILTIN_ALIASES = {'int': int, 'float': float, 'bool': bool, 'object': object, 'str': str, 'complex': complex}


class NumpyWithBuiltinAliases(types.ModuleType):
    """numpy, plus those builtin aliases removed in numpy 1.24 that this numpy lacks; everything else is numpy's."""

    def __init__(self) -> None:
        super().__init__(numpy.__name__, numpy.__doc__)
        with warnings.catch_warnings():  # numpy 2 warns that np.object etc. may come back as numpy scalar types
            warnings.simplefilter('ignore', FutureWarning)
            self.__dict__.update({name: alias for name, alias in BUILTIN_ALIASES.items() if not hasattr(numpy, name)})

    def __getattr__(self, name: str):  # only called for what the instance lacks: numpy's own names
        return getattr(numpy, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(numpy)) | set(BUILTIN_ALIASES))


# module -> the symptom there without the patch (what calls the removed alias, and what a user hits).
ALIAS_USERS = {
    # ``ClassBalancedDataset`` (repeat-factor re-sampling for long-tail data) over a ``CustomDataset`` subclass (a
    # custom dataset in mmdet's middle format, VOC, ...) calls ``get_cat_ids``:
    # ``AttributeError: module 'numpy' has no attribute 'int'`` in ``CustomDataset.get_cat_ids``.
    'mmdet.datasets.custom': 'CustomDataset.get_cat_ids: np.int',
    # The same through ``OpenImagesDataset.get_cat_ids`` (``ClassBalancedDataset`` over OpenImages).
    'mmdet.datasets.openimages': 'OpenImagesDataset.get_cat_ids: np.int',
    # ``IoUBalancedNegSampler`` (Libra R-CNN's sampler, ``rcnn.sampler.neg_sampler``) with ``floor_thr`` or
    # ``num_bins`` > 1: ``np.array(..., dtype=np.int)`` in ``sample_via_interval`` and ``_sample_neg``.
    'mmdet.core.bbox.samplers.iou_balanced_neg_sampler': 'IoUBalancedNegSampler._sample_neg: np.int',
    # The LVIS API (``lvis`` 0.5.3, the last release; mmdet's ``LVISV1Dataset.evaluate`` runs it):
    # ``LVISEval.accumulate`` casts with ``dtype=np.float``, so every LVIS evaluation stops after the whole
    # inference. Patched where installed.
    'lvis.eval': 'LVISEval.accumulate: np.float',
}
# Modules of optional packages: patched when the package is installed, skipped otherwise.
OPTIONAL_ALIAS_USERS = ('lvis.eval',)
# Not patched: mmcv 1.7.2's other use, ``np.float`` in ``mmcv.ops.pixel_group``, sits in its ``parrots`` branch, which
# never runs on torch.


def _patch_removed_builtin_aliases() -> None:
    """Give each module of :data:`ALIAS_USERS` a numpy with the builtin aliases (see the module docstring)."""
    for module_name in ALIAS_USERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            if module_name in OPTIONAL_ALIAS_USERS:
                continue
            raise
        if not isinstance(module.np, NumpyWithBuiltinAliases):
            module.np = NumpyWithBuiltinAliases()


PATCHES = (_patch_removed_builtin_aliases,)


def apply_patches() -> None:
    """Apply every numpy compatibility patch (idempotent)."""
    for patch in PATCHES:
        patch()
