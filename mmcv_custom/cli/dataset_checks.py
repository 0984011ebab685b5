"""Check a config's dataset files before building the datasets: one line naming the file and the field to change.

Without this, a missing annotation file surfaces as a traceback from deep inside pycocotools / mmdet. The tools
call :func:`check_dataset_files` with ``cfg.data.train`` (``field='data.train'``) etc. before ``build_dataset``;
wrappers (``RepeatDataset``, ``ClassBalancedDataset``, ``ConcatDataset``, lists) are followed, so the field named
in the message is the exact dotted path to edit, e.g. ``data.train.dataset.ann_file``.
"""
from __future__ import annotations

import difflib
import os.path as osp
from collections.abc import Iterator

from .errors import UserError

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
        if ds_cfg.get('ann_file') == '':
            raise DatasetFileError(f'{ds_field}.ann_file is empty (set {ds_field}.ann_file{where}, or --cfg-options '
                                   f'{ds_field}.ann_file=PATH)')
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


# ----------------------------------------------------------------------------------------------------------
# COCO-format annotation records: what mmdet's CocoDataset and pycocotools' COCOeval read from each record
# ----------------------------------------------------------------------------------------------------------

IMAGE_KEYS = ('id', 'file_name', 'height', 'width')
ANNOTATION_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'area')   # mmdet reads ann['area'] while parsing


def _record_name(kind: str, index: int, record) -> str:
    ident = record.get('id') if isinstance(record, dict) else None
    return f'{kind}[{index}]' + (f' (id {ident})' if ident is not None else '')


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_coco_records(content: dict, ann_file: str, field: str, *, need_masks: bool = False,
                       evaluated: bool = False, training: bool = False, classes=None) -> None:
    """Raise :class:`UserError` naming ``ann_file``, the record and the key for a COCO-format annotation file that
    would fail mid-run: a record without a key mmdet or COCOeval reads (``iscrowd`` when ``evaluated``,
    ``segmentation`` when ``need_masks``), a ``bbox`` that is not 4 numbers, a ``category_id`` that no category
    has, a ``classes`` name that no category has (mmdet would silently drop it and shift the labels), and - for
    ``training`` - a file whose boxes are all degenerate (mmdet drops them and trains on empty images)."""
    where = f'{field}: annotation file {ann_file}'
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(content.get(key), list):
            raise UserError(f'{where}: no "{key}" list (not a COCO-format file?)')
    for index, image in enumerate(content['images']):
        missing = [key for key in IMAGE_KEYS if not isinstance(image, dict) or key not in image]
        if missing:
            raise UserError(f'{where}: {_record_name("images", index, image)} has no "{missing[0]}"')
    category_names = {}
    for index, category in enumerate(content['categories']):
        if not isinstance(category, dict) or 'id' not in category or 'name' not in category:
            raise UserError(f'{where}: {_record_name("categories", index, category)} needs "id" and "name"')
        category_names[category['id']] = category['name']
    required = ANNOTATION_KEYS + (('iscrowd',) if evaluated else ()) + (('segmentation',) if need_masks else ())
    degenerate = 0
    for index, ann in enumerate(content['annotations']):
        if not isinstance(ann, dict):
            raise UserError(f'{where}: annotations[{index}] is not a record (a JSON object)')
        missing = [key for key in required if key not in ann]
        if missing:
            raise UserError(f'{where}: {_record_name("annotations", index, ann)} has no "{missing[0]}"')
        bbox = ann['bbox']
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise UserError(f'{where}: {_record_name("annotations", index, ann)}: "bbox" must be 4 numbers '
                            f'[x, y, width, height], got {bbox!r}')
        if ann['category_id'] not in category_names:
            raise UserError(f'{where}: {_record_name("annotations", index, ann)}: "category_id" '
                            f'{ann["category_id"]!r} is not the id of any category')
        if bbox[2] < 1 or bbox[3] < 1 or not _is_number(ann['area']) or ann['area'] <= 0:
            degenerate += 1
    if training and content['annotations'] and degenerate == len(content['annotations']):
        raise UserError(f'{where}: all {degenerate} boxes are degenerate (width or height < 1 pixel, or area <= 0): '
                        'mmdet drops them and would train on empty images')
    if isinstance(classes, (list, tuple)):
        known = list(dict.fromkeys(category_names.values()))
        for name in classes:
            if name not in known:
                nearest = difflib.get_close_matches(str(name), [str(n) for n in known], n=1)
                guess = f'did you mean {nearest[0]!r}? ' if nearest else ''
                raise UserError(f'{field}.classes: {name!r} is not a category of {ann_file} ({guess}categories: '
                                f'{", ".join(map(str, known[:20]))}{", ..." if len(known) > 20 else ""})')
