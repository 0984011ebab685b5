"""What the entry points (train.py, test.py, image_demo.py, get_flops.py, deploy.py) check before they build anything,
each failure a :class:`~mmcv_custom.cli.UserError` naming the file, field or argument (one line, exit status 1,
through :func:`~mmcv_custom.cli.run_cli`):

* configs: :func:`load_config` (missing file, syntax error, bad ``--cfg-options``, a field of the wrong type, a
  ``type=`` that no registry knows, with the nearest registered names);
* datasets: :func:`check_annotation_files` (missing, empty, non-JSON annotation files) and :func:`check_dataset`
  (an empty dataset, a missing image);
* checkpoints: :func:`read_checkpoint` (a missing, truncated or corrupt file) and :func:`load_checkpoint_checked`
  (a checkpoint of another model is refused, with the count and the first mismatched keys, unless a partial load is
  asked for);
* arguments: :func:`check_eval_args` (``--eval`` metrics the dataset cannot compute, ``--format-only`` for a
  dataset without a result format) and :func:`check_writable_dir` (a work dir on a read-only path).
"""
from __future__ import annotations

import difflib
import json
import os
import os.path as osp
import random
import sys
import tempfile
import warnings
from collections.abc import Iterator
from numbers import Real

from mmcv_custom.cli import UserError
from mmdet_custom.datasets.checks import DatasetFileError, check_dataset_files, leaf_dataset_configs

# ----------------------------------------------------------------------------------------------------------
# Config loading and field checks
# ----------------------------------------------------------------------------------------------------------

NUMBER = (Real,)
# Fields whose type mmcv/mmdet only check deep inside a run (or never): checked up front when present.
CONFIG_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    'data.samples_per_gpu': (int,),
    'data.workers_per_gpu': (int,),
    'runner.max_iters': (int,),
    'runner.max_epochs': (int,),
    'optimizer.lr': NUMBER,
    'optimizer.weight_decay': NUMBER,
    'lr_config.warmup_iters': (int,),
    'lr_config.warmup_ratio': NUMBER,
    'checkpoint_config.interval': (int,),
    'checkpoint_config.max_keep_ckpts': (int,),
    'log_config.interval': (int,),
    'evaluation.interval': (int,),
    'model.backbone.channels': (int,),
    'model.backbone.depths': (list, tuple),
    'model.backbone.groups': (list, tuple),
    'model.backbone.drop_path_rate': NUMBER,
    'model.backbone.out_indices': (list, tuple),
    'model.neck.in_channels': (list, tuple),
    'model.neck.out_channels': (int,),
    'data.train': (dict, list, tuple),
    'data.val': (dict, list, tuple),
    'data.test': (dict, list, tuple),
    'model': (dict,),
    'workflow': (list, tuple),
}
_MISSING = object()


def _lookup(cfg, dotted: str):
    node = getattr(cfg, '_cfg_dict', cfg)  # an mmcv Config wraps its ConfigDict (a dict subclass)
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def check_config_types(cfg, field_types: dict[str, tuple[type, ...]] | None = None) -> None:
    """Raise :class:`UserError` naming the first field present in ``cfg`` with a value of the wrong type."""
    for dotted, types in (field_types or CONFIG_FIELD_TYPES).items():
        value = _lookup(cfg, dotted)
        if value is _MISSING or value is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in types  # True is an int to Python, not to a config
        if wrong_bool or not isinstance(value, types):
            expected = ' or '.join('number' if t is Real else t.__name__ for t in types)
            raise UserError(f'config field {dotted}: expected {expected}, got {type(value).__name__} {value!r}')
    if 'model' in cfg and 'type' not in cfg.model:
        raise UserError('config field model.type is missing')


def registered_type_names() -> set[str]:
    """Every name registered in an mmcv ``Registry`` of the imported modules (mmcv, mmdet and this plugin), plus the
    names looked up without a registry: the ``mmcv.ops`` classes and functions mmdet finds by name
    (``roi_layer=dict(type='RoIAlign')``, ``nms=dict(type='nms')``) and DINO's ``dn_cfg`` generators."""
    import mmcv.ops
    from mmcv.utils import Registry

    from mmdet_custom.models.utils.query_denoising import DN_GENERATORS

    names = {name for name in dir(mmcv.ops) if not name.startswith('_')} | set(DN_GENERATORS)
    seen: set[int] = set()
    with warnings.catch_warnings():   # isinstance() on deprecated module attributes (torch's) warns
        warnings.simplefilter('ignore')
        for module in list(sys.modules.values()):
            try:
                values = list(vars(module).values())
            except TypeError:  # not a module object (some packages put proxies into sys.modules)
                continue
            for value in values:
                # every registry lives in some module, children (mmdet's MODELS under mmcv's) included
                if isinstance(value, Registry) and id(value) not in seen:
                    seen.add(id(value))
                    names.update(value.module_dict)
    return names


# Config keys whose contents are never built (accepted and unused, as in the original: docs/deviations.md).
UNBUILT_KEYS = ('snip_cfg', 'fed_loss_cfg')


def _type_fields(node, path: str) -> Iterator[tuple[str, str]]:
    """(dotted path, value) of every ``type`` string in a config tree. Albumentations' own transform names inside
    ``Albu(transforms=...)`` are not registry names and are left out, as are the unbuilt ``UNBUILT_KEYS``."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield f'{path}.type' if path else 'type', node['type']
        for key, value in node.items():
            if key in UNBUILT_KEYS or (key == 'transforms' and node.get('type') == 'Albu'):
                continue
            yield from _type_fields(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            yield from _type_fields(item, f'{path}.{index}')


def check_registered_types(cfg, sections: tuple[str, ...] = ('model', 'data', 'optimizer', 'optimizer_config',
                                                              'runner', 'log_config', 'checkpoint_config',
                                                              'custom_hooks')) -> None:
    """Raise :class:`UserError` for the first ``type=`` in ``cfg``'s ``sections`` that no registry knows, with the
    nearest registered names (mmcv would raise a ``KeyError`` from deep inside the build, often after minutes)."""
    known = None
    for section in sections:
        if section not in cfg:
            continue
        for field, value in _type_fields(cfg[section], section):
            if '.' in value:  # a scoped name ('mmdet.Foo'): resolved by mmcv across packages, not checked here
                continue
            known = registered_type_names() if known is None else known
            if value not in known:
                nearest = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.6)
                hint = f'nearest registered names: {", ".join(nearest)}' if nearest else 'no similar registered name'
                raise UserError(f'config field {field}: {value!r} is not a registered type ({hint})')


def load_config(path: str, cfg_options: dict | None = None):
    """``mmcv.Config.fromfile`` with ``--cfg-options`` merged, ``${key}`` substituted, field types and registered
    ``type=`` names checked."""
    from mmcv import Config
    from mmdet.utils import replace_cfg_vals, update_data_root

    if not osp.isfile(path):
        raise UserError(f'config file {path} does not exist')
    if osp.splitext(path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        raise UserError(f'config file {path}: expected a .py, .json or .yaml file')
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as error:
        raise UserError(f'config file {path}: syntax error at line {error.lineno}: {error.msg}') from None
    except (FileNotFoundError, OSError) as error:  # e.g. a missing _base_ file
        raise UserError(f'config file {path}: {error}') from None
    except (KeyError, TypeError, ValueError, NameError, ImportError) as error:
        raise UserError(f'config file {path}: {type(error).__name__}: {error}') from None
    cfg = replace_cfg_vals(cfg)
    update_data_root(cfg)
    if cfg_options is not None:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f'--cfg-options {cfg_options}: {error}') from None
    check_config_types(cfg)
    check_registered_types(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Datasets: annotation files, image files
# ----------------------------------------------------------------------------------------------------------

def check_annotation_files(data_cfg, field: str, config_file: str | None = None) -> None:
    """Raise :class:`UserError` for a missing dataset file or folder (``check_dataset_files``), or an empty or
    non-JSON annotation file in ``data_cfg``."""
    try:
        check_dataset_files(data_cfg, field, config_file=config_file)
    except DatasetFileError as error:
        raise UserError(str(error)) from None
    for ds_cfg, ds_field in leaf_dataset_configs(data_cfg, field):
        ann_files = ds_cfg.get('ann_file')
        for ann_file in ann_files if isinstance(ann_files, (list, tuple)) else [ann_files]:
            if not isinstance(ann_file, str) or '://' in ann_file:
                continue
            if osp.getsize(ann_file) == 0:
                raise UserError(f'{ds_field}.ann_file: annotation file {ann_file} is empty')
            if ann_file.endswith('.json'):
                try:
                    with open(ann_file) as f:
                        content = json.load(f)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    raise UserError(f'{ds_field}.ann_file: annotation file {ann_file} is not valid JSON '
                                    f'({error})') from None
                if isinstance(content, dict) and 'images' in content and not content['images']:
                    raise UserError(f'{ds_field}.ann_file: annotation file {ann_file} lists no images')


def _leaf_datasets(dataset) -> Iterator:
    if hasattr(dataset, 'datasets'):
        for inner in dataset.datasets:
            yield from _leaf_datasets(inner)
    elif hasattr(dataset, 'dataset'):
        yield from _leaf_datasets(dataset.dataset)
    else:
        yield dataset


MAX_IMAGES_CHECKED = 200_000


def check_dataset(dataset, field: str) -> None:
    """Raise :class:`UserError` when ``dataset`` is empty or an image it references does not exist."""
    if len(dataset) == 0:
        raise UserError(f'{field}: the dataset has no usable images (check ann_file and filter_empty_gt)')
    for leaf in _leaf_datasets(dataset):
        infos = getattr(leaf, 'data_infos', None)
        prefix = getattr(leaf, 'img_prefix', None)
        if not infos or prefix is None or '://' in str(prefix):
            continue
        if len(infos) > MAX_IMAGES_CHECKED:  # very large sets: a sample; the rest is guarded at load time
            infos = random.Random(0).sample(list(infos), MAX_IMAGES_CHECKED)
        for info in infos:
            filename = info.get('filename') or info.get('file_name')
            if filename is None:
                continue
            path = osp.join(prefix, filename)
            if not osp.isfile(path):
                ann = getattr(leaf, 'ann_file', '?')
                raise UserError(f'{field}: image file {path} referenced by {ann} does not exist')


def build_dataset_checked(data_cfg, field: str):
    """mmdet's ``build_dataset``; a dataset that cannot be built from its files (e.g. an annotation JSON without
    the keys its format needs) is a :class:`UserError` naming ``field``."""
    from mmdet.datasets import build_dataset
    try:
        return build_dataset(data_cfg)
    except (KeyError, TypeError, ValueError, AssertionError, IndexError) as error:
        raise UserError(f'{field}: the dataset cannot be built: {type(error).__name__}: {error}') from None


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------

PARTIAL_FLAG = '--allow-partial-checkpoint'
SHOWN_KEYS = 3


def read_checkpoint(path: str, field: str = 'checkpoint') -> dict:
    """The checkpoint at ``path`` (local file or URL) on the CPU; a missing, truncated or corrupt file is a
    :class:`UserError` naming ``field``."""
    from mmcv.runner import CheckpointLoader

    if '://' not in path and not osp.isfile(path):
        raise UserError(f'{field} {path}: checkpoint file does not exist')
    try:
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except Exception as error:  # noqa: BLE001  (pickle, zip and torch all fail differently on a broken file)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise UserError(f'{field} {path}: cannot be read, truncated or not a checkpoint ({type(error).__name__}'
                        f'{": " + reason if reason else ""})') from None
    return checkpoint


def state_dict_of(checkpoint, path: str, field: str = 'checkpoint') -> dict:
    """The tensors of a checkpoint (``state_dict`` of an mmcv checkpoint, or a bare state dict), without the
    ``module.`` prefix of a wrapped model (as mmcv's ``load_checkpoint`` strips it)."""
    import torch

    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f'{field} {path}: holds no state_dict of tensors')
    return {key[len('module.'):] if key.startswith('module.') else key: value for key, value in state_dict.items()}


def checkpoint_mismatch(state_dict: dict, model) -> list[str]:
    """What keeps ``state_dict`` from loading exactly into ``model``: counts and the first keys of the missing,
    unexpected and mis-shaped tensors (empty when it matches)."""
    model_state = model.state_dict()
    missing = sorted(set(model_state) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_state))
    mis_shaped = [f'{key} {tuple(state_dict[key].shape)} vs {tuple(model_state[key].shape)}'
                  for key in sorted(set(model_state) & set(state_dict))
                  if state_dict[key].shape != model_state[key].shape]
    return [f'{len(items)} {label} (e.g. {", ".join(items[:SHOWN_KEYS])})'
            for label, items in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', mis_shaped))
            if items]


def check_checkpoint_matches(state_dict: dict, model, path: str, target: str, field: str = 'checkpoint',
                             hint: str = '') -> None:
    """Raise :class:`UserError` unless ``state_dict`` holds exactly ``model``'s tensors, names and shapes (mmcv only
    warns about a mismatch, then runs a partly random model). ``target`` names the model's config."""
    problems = checkpoint_mismatch(state_dict, model)
    if problems:
        raise UserError(f'{field} {path} does not match {target}: {", ".join(problems)}{hint}')


def load_checkpoint_checked(model, path: str, target: str, allow_partial: bool = False,
                            field: str = 'checkpoint') -> dict:
    """Read ``path`` and load it into ``model``; returns the checkpoint. A checkpoint of another model is refused
    (:func:`check_checkpoint_matches`) unless ``allow_partial`` (then mmcv's non-strict load, which warns)."""
    from mmcv.runner import load_state_dict
    from mmdet.utils import get_root_logger

    checkpoint = read_checkpoint(path, field)
    state_dict = state_dict_of(checkpoint, path, field)
    if not allow_partial:
        check_checkpoint_matches(state_dict, model, path, target, field,
                                 hint=f'; pass {PARTIAL_FLAG} to load the matching tensors only')
    load_state_dict(model, state_dict, strict=False, logger=get_root_logger())
    return checkpoint if isinstance(checkpoint, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# Arguments: evaluation metrics, output folders
# ----------------------------------------------------------------------------------------------------------

COCO_METRICS = ('bbox', 'segm', 'proposal', 'proposal_fast')
# What mmdet 2.28's evaluate() accepts, by dataset class (it checks only after the whole inference); the nearest class
# in a dataset's MRO wins. A dataset class may say it itself with an ``EVAL_METRICS`` attribute.
EVAL_METRICS = {
    'CocoPanopticDataset': ('PQ', 'bbox', 'segm', 'proposal'),
    'CityscapesDataset': COCO_METRICS + ('cityscapes',),
    'CocoDataset': COCO_METRICS,
    'OpenImagesDataset': ('mAP',),
    'CustomDataset': ('mAP', 'recall'),   # VOC, WIDER Face, XML-style datasets
}
# CustomDataset.evaluate (and its VOC/OpenImages overrides) take one metric per call.
SINGLE_METRIC_BASES = ('CustomDataset',)
MULTI_METRIC_BASES = ('CocoDataset',)


def allowed_eval_metrics(dataset_cls: type) -> tuple[tuple[str, ...], bool] | None:
    """(metrics ``dataset_cls.evaluate`` accepts, whether it takes several at once), or None when unknown."""
    own = getattr(dataset_cls, 'EVAL_METRICS', None)
    if own is not None:
        return tuple(own), True
    names = [cls.__name__ for cls in dataset_cls.__mro__]
    for name in names:
        if name in EVAL_METRICS:
            multi = any(base in names for base in MULTI_METRIC_BASES) or not any(
                base in names for base in SINGLE_METRIC_BASES)
            return EVAL_METRICS[name], multi
    return None


def check_eval_args(data_cfg, field: str, eval_metrics: list[str] | None, format_only: bool,
                    plot_dir: str | None = None) -> None:
    """Raise :class:`UserError` when ``--eval`` names a metric the dataset in ``data_cfg`` cannot compute, when
    ``--format-only`` is asked of a dataset without a result format, or ``--plot-dir`` of a run that computes no
    COCO box or mask AP - before any model or dataset is built."""
    from mmdet.datasets import DATASETS, CocoDataset, CustomDataset

    dataset_type = data_cfg.get('type') if isinstance(data_cfg, dict) else None
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else None
    if plot_dir is not None:
        if dataset_cls is None or not issubclass(dataset_cls, CocoDataset):
            raise UserError(f'--plot-dir: per-class AP and precision-recall plots need a COCO-style dataset, '
                            f'{field}.type is {dataset_type}')
        if not set(eval_metrics or ()) & {'bbox', 'segm'}:
            raise UserError('--plot-dir: plots the COCO evaluation, so it needs --eval bbox and/or segm')
    if dataset_cls is None:   # a list of datasets or a wrapper: its evaluate() decides
        return
    if eval_metrics:
        allowed = allowed_eval_metrics(dataset_cls)
        if allowed is not None:
            metrics, multi = allowed
            for metric in eval_metrics:
                if metric not in metrics:
                    lowered = {name.lower(): name for name in metrics}
                    nearest = difflib.get_close_matches(metric.lower(), list(lowered), n=1)
                    guess = f'did you mean {lowered[nearest[0]]!r}? ' if nearest else ''
                    raise UserError(f'--eval {metric}: not a metric of {dataset_type} ({field}.type); {guess}'
                                    f'choose from {", ".join(metrics)}')
            if not multi and len(eval_metrics) > 1:
                raise UserError(f'--eval {" ".join(eval_metrics)}: {dataset_type} evaluates one metric per run; '
                                f'choose one of {", ".join(metrics)}')
    if format_only and dataset_cls.format_results is CustomDataset.format_results:
        raise UserError(f'--format-only: {dataset_type} ({field}.type) has no result format to write; use --out '
                        'FILE.pkl to keep the raw results')


def _probe_writable(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write_test_'):
        pass


def check_writable_dir(path: str, field: str) -> None:
    """Create ``path`` if needed and make sure a file can be written there; else :class:`UserError` naming
    ``field`` (a read-only or full file system would otherwise fail after the slow part)."""
    try:
        _probe_writable(path)
    except OSError as error:
        raise UserError(f'{field} {path}: cannot write there ({error.strerror or error})') from None


def check_writable_file(path: str, field: str) -> None:
    """The folder of output file ``path`` exists or can be created, and is writable (see :func:`check_writable_dir`)."""
    try:
        _probe_writable(osp.dirname(osp.abspath(path)))
    except OSError as error:
        raise UserError(f'{field} {path}: cannot write there ({error.strerror or error})') from None
