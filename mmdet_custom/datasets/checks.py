"""Check a config's dataset files before building the datasets: one line naming the file and the field to change.

Without this, a missing annotation file surfaces as a traceback from deep inside pycocotools / mmdet. The tools
call :func:`check_dataset_files` with ``cfg.data.train`` (``field='data.train'``) etc. before ``build_dataset``;
wrappers (``RepeatDataset``, ``ClassBalancedDataset``, ``ConcatDataset``, lists) are followed, so the field named
in the message is the exact dotted path to edit, e.g. ``data.train.dataset.ann_file``.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Iterator

from mmcv_custom.cli import UserError

# Fields of mmdet dataset configs that name an input file (OpenImages has several besides ann_file).
FILE_FIELDS = ('ann_file', 'label_file', 'hierarchy_file', 'meta_file', 'image_level_ann_file')
DIR_FIELDS = ('img_prefix',)


class DatasetFileError(FileNotFoundError, UserError):
    """A dataset file or folder named by the config does not exist; the message names the config field."""


def leaf_dataset_configs(data_cfg, field: str) -> Iterator[tuple[dict, str]]:
    """(leaf dataset config, its dotted config path) for every dataset inside wrappers and lists."""
    if isinstance(data_cfg, (list, tuple)):
        for i, item in enumerate(data_cfg):
            yield from leaf_dataset_configs(item, f'{field}.{i}')
    elif isinstance(data_cfg, dict):
        if 'dataset' in data_cfg:
            yield from leaf_dataset_configs(data_cfg['dataset'], f'{field}.dataset')
        elif 'datasets' in data_cfg:
            yield from leaf_dataset_configs(data_cfg['datasets'], f'{field}.datasets')
        else:
            yield data_cfg, field


def _paths(value, field: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, (list, tuple)):  # e.g. VOC07+12: lists of ann_file / img_prefix
        for i, item in enumerate(value):
            yield from _paths(item, f'{field}.{i}')
    elif isinstance(value, str) and value and '://' not in value:  # remote (s3://, http://) paths are not checked
        yield value, field


def check_dataset_files(data_cfg, field: str, config_file: str | None = None, check_dirs: bool = True) -> None:
    """Raise :class:`DatasetFileError` for the first missing annotation file (or image folder) of ``data_cfg``.

    ``field`` is the config path of ``data_cfg`` (e.g. ``'data.train'``); ``config_file`` is named in the message.
    """
    where = f' in {config_file}' if config_file else ''
    for ds_cfg, ds_field in leaf_dataset_configs(data_cfg, field):
        for key in FILE_FIELDS:
            for path, path_field in _paths(ds_cfg.get(key), f'{ds_field}.{key}'):
                if not osp.isfile(path):
                    raise DatasetFileError(f'{path_field}: file {path} does not exist (set {path_field}{where}, or '
                                           f'--cfg-options {path_field}=PATH)')
        if not check_dirs:
            continue
        for key in DIR_FIELDS:
            for path, path_field in _paths(ds_cfg.get(key), f'{ds_field}.{key}'):
                if not osp.isdir(path):
                    raise DatasetFileError(f'{path_field}: image folder {path} does not exist (set {path_field}'
                                           f'{where}, or --cfg-options {path_field}=PATH)')
