"""``GuardedLoadImageFromFile``: mmdet's ``LoadImageFromFile`` that skips (training) or names (testing) an image it
cannot decode, registered in mmdet's ``PIPELINES`` so a config can name it::

    dict(type='GuardedLoadImageFromFile', on_error='skip')   # or 'raise' (the default)

``train.py`` and ``test.py`` put it in place of every ``LoadImageFromFile`` of the config they run
(:func:`guard_image_loading`, a config edit before the datasets are built): training skips an unreadable image with a
warning, testing stops with its name (a skipped test image would silently change the metrics).
"""
from __future__ import annotations

import logging
import os.path as osp
import warnings

from mmdet.datasets.builder import PIPELINES
from mmdet.datasets.pipelines import LoadImageFromFile

from mmcv_custom.cli.errors import UserError

ON_ERROR_CHOICES = ('raise', 'skip')


class UnreadableImageError(UserError):
    """An image file exists but cannot be read or decoded."""


@PIPELINES.register_module()
class GuardedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` (same arguments) plus ``on_error``: ``'raise'`` an :class:`UnreadableImageError` naming
    the file, or ``'skip'`` it with a warning (mmdet's training dataset then draws another image)."""

    def __init__(self, *args, on_error: str = 'raise', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f'on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}')
        self.on_error = on_error

    def __call__(self, results):
        try:
            loaded = super().__call__(results)
        except Exception as error:  # noqa: BLE001  (decoders fail with cv2.error, OSError, AttributeError...)
            loaded, reason = None, f'{type(error).__name__}: {error}'
        else:
            reason = None if loaded is not None and loaded.get('img') is not None else 'no image decoded'
        if reason is None:
            return loaded
        prefix = results.get('img_prefix')
        filename = results['img_info']['filename']
        path = osp.join(prefix, filename) if prefix is not None else filename
        if self.on_error == 'skip':
            message = f'skipping unreadable image {path} ({reason})'
            warnings.warn(message, stacklevel=2)
            logging.getLogger('mmdet').warning(message)
            return None  # mmdet's CustomDataset then draws another training image
        raise UnreadableImageError(f'image file {path} cannot be read or decoded ({reason})')

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, on_error={self.on_error!r})'


def guard_image_loading(data_cfg, on_error: str) -> int:
    """Make every ``LoadImageFromFile`` in the pipelines of ``data_cfg`` (a dataset config, wrappers and lists
    included) a ``GuardedLoadImageFromFile`` with ``on_error``; returns how many were replaced. Edits the config
    in place, before the dataset is built."""
    replaced = 0
    if isinstance(data_cfg, (list, tuple)):
        return sum(guard_image_loading(item, on_error) for item in data_cfg)
    if not isinstance(data_cfg, dict):
        return 0
    for key, value in data_cfg.items():
        if key == 'pipeline' and isinstance(value, (list, tuple)):
            for transform in value:
                if isinstance(transform, dict) and transform.get('type') == 'LoadImageFromFile':
                    transform['type'] = 'GuardedLoadImageFromFile'
                    transform['on_error'] = on_error
                    replaced += 1
        elif isinstance(value, (dict, list, tuple)):
            replaced += guard_image_loading(value, on_error)
    return replaced
