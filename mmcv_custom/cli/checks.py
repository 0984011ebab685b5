"""What the entry points (train.py, test.py, image_demo.py, get_flops.py, deploy.py) check before they build anything,
each failure a :class:`~mmcv_custom.cli.errors.UserError` naming the file, field or argument (one line, exit status 1,
through :func:`~mmcv_custom.cli.errors.run_cli`):

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
import inspect
import json
import os
import os.path as osp
import random
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from numbers import Real

from mmcv import DictAction

from .dataset_checks import (
    DatasetFileError,
    check_coco_records,
    check_dataset_files,
    leaf_dataset_configs,
)
from .errors import UserError, check_config_path, debug_requested

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
    (``roi_layer=dict(type='RoIAlign')``, ``nms=dict(type='nms')``). The plugin's names are known once it is
    imported (every config of this repository imports it: ``custom_imports``)."""
    import mmcv.ops
    from mmcv.utils import Registry

    names = {name for name in dir(mmcv.ops) if not name.startswith('_')}
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


def _config_frames(error: BaseException) -> list:
    """The frames of mmcv's ``Config._file2dict`` (one per config file being read, outermost first) in the traceback
    of ``error``, with the user's file (``filename``) and mmcv's temporary copy (``temp_config_file``)."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == '_file2dict' and 'filename' in frame.f_locals:
            frames.append(frame)
        tb = tb.tb_next
    return frames


def _forget_temporary_copies(frames: list) -> None:
    """mmcv reads a config through a temporary copy whose folder is gone by the time the copy's file object is
    garbage-collected: its clean-up then prints an "Exception ignored ... FileNotFoundError" traceback. Close the
    copies without deleting them (the folder went with them), and drop the folder mmcv left on ``sys.path``."""
    for frame in frames:
        temp_file = frame.f_locals.get('temp_config_file')
        closer = getattr(temp_file, '_closer', None)
        if closer is not None and hasattr(closer, 'delete'):
            closer.delete = False
            if hasattr(closer, 'delete_on_close'):
                closer.delete_on_close = False
            try:
                temp_file.close()
            except OSError:
                pass
        temp_dir = frame.f_locals.get('temp_config_dir')
        while isinstance(temp_dir, str) and temp_dir in sys.path:
            sys.path.remove(temp_dir)


def _config_error_line(error: BaseException, path: str, field: str = 'config file') -> str:
    """One line for an exception raised while mmcv read config ``path``: the user's file (``path`` or the
    ``_base_`` file that failed) and line, never mmcv's temporary copy."""
    frames = _config_frames(error)
    user_file = frames[-1].f_locals['filename'] if frames else path
    temp_file = getattr(frames[-1].f_locals.get('temp_config_file'), 'name', None) if frames else None
    _forget_temporary_copies(frames)
    shown = path if osp.abspath(path) == osp.abspath(user_file) else f'{path}: its base {user_file}'
    lineno, message = None, f'{type(error).__name__}: {error}'
    if isinstance(error, SyntaxError):  # mmcv re-raises the compiler's error as text, without its line: compile again
        try:
            with open(user_file, encoding='utf-8') as f:
                compile(f.read(), user_file, 'exec')
        except SyntaxError as own:
            lineno, message = own.lineno, f'syntax error: {own.msg}'
    elif hasattr(error, 'problem_mark') and error.problem_mark is not None:  # yaml's errors
        lineno = error.problem_mark.line + 1
        message = f'invalid YAML: {getattr(error, "problem", None) or error}'
    elif isinstance(error, json.JSONDecodeError):
        lineno, message = error.lineno, f'invalid JSON: {error.msg}'
    else:  # an exception raised by the config's own code: the innermost line of the (line-for-line) copy
        tb = error.__traceback__
        while tb is not None:
            if temp_file is not None and tb.tb_frame.f_code.co_filename == temp_file:
                lineno = tb.tb_lineno
            tb = tb.tb_next
    error.__traceback__ = None  # the frames hold the temporary copies: release them now
    return f'{field} {shown}{f", line {lineno}" if lineno else ""}: {message}'


def _config_options_line(option_string: str | None, item: str, reason: str) -> str:
    return f'{option_string or "--cfg-options"} {item}: {reason}'


def _balanced(text: str) -> bool:
    depth: list[str] = []
    pairs = {')': '(', ']': '['}
    for char in text:
        if char in '([':
            depth.append(char)
        elif char in pairs:
            if not depth or depth.pop() != pairs[char]:
                return False
    return not depth


class KeyValueAction(DictAction):
    """mmcv's ``DictAction`` (``KEY=VALUE`` items) whose malformed items - no ``=``, an empty key, unbalanced brackets
    - are a :class:`UserError` naming the option and the item (mmcv raises from inside argparse)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = {}
        for item in values:
            key, sep, value = item.partition('=')
            if not sep or not key:
                raise UserError(_config_options_line(option_string, item, 'expected KEY=VALUE'))
            if not _balanced(value):
                raise UserError(_config_options_line(option_string, item, 'unbalanced brackets in the value'))
            try:
                options[key] = self._parse_iterable(value)
            except (AssertionError, ValueError, IndexError) as error:
                reason = f'cannot parse the value ({error})'
                raise UserError(_config_options_line(option_string, item, reason)) from None
        setattr(namespace, self.dest, options)


def read_config(path: str, field: str = 'config file'):
    """``mmcv.Config.fromfile(path)``; any failure of the file itself (a syntax error, an exception its code raises,
    broken YAML/JSON, a missing ``_base_``) is one line naming the user's file and line (``field`` names the
    argument, e.g. ``deploy_cfg``)."""
    from mmcv import Config

    check_config_path(path, field)
    try:
        return Config.fromfile(path)
    except Exception as error:  # noqa: BLE001  (a config is code: it can raise anything)
        if debug_requested():
            raise
        raise UserError(_config_error_line(error, path, field)) from None


def load_config(path: str, cfg_options: dict | None = None, required: tuple[str, ...] = (),
                field: str = 'config file'):
    """``mmcv.Config.fromfile`` with ``--cfg-options`` merged, ``${key}`` substituted, field types and registered
    ``type=`` names checked. Any failure of the config file itself (a syntax error, an exception its code raises,
    broken YAML/JSON, a missing ``_base_``) is one line naming the user's file and line; ``required`` names the
    fields the caller needs (``'model'``, ``'data.train'``...)."""
    from mmdet.utils import replace_cfg_vals, update_data_root

    cfg = read_config(path, field)
    cfg = replace_cfg_vals(cfg)
    update_data_root(cfg)
    if cfg_options is not None:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f'--cfg-options {cfg_options}: {error}') from None
    for name in required:
        if _lookup(cfg, name) in (_MISSING, None):
            raise UserError(f'{field} {path} has no {name} (set it there or in a _base_ file)')
    check_config_types(cfg)
    check_registered_types(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------------------
# One validation pass over the merged config: values mmcv/mmdet check only deep inside a run (or never)
# ----------------------------------------------------------------------------------------------------------

LOADER_SECTIONS = ('data', 'data.train_dataloader', 'data.val_dataloader', 'data.test_dataloader')
OPTIMIZER_OWN_KEYS = ('type', 'constructor', 'paramwise_cfg')  # read by mmcv's optimizer constructor, not torch
# Heads whose num_classes is not the dataset's (mmdet's NumClassCheckHook skips the same ones).
NOT_CLASS_HEADS = ('RPNHead', 'GARPNHead', 'CascadeRPNHead', 'StageCascadeRPNHead', 'FusedSemanticHead', 'VGG')


def _rejected(field: str, what: str, error: BaseException) -> UserError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else 'an assertion on its arguments failed'
    return UserError(f'config field {field}: {what} rejects it: {reason}')


def check_keywords(function, keys, skip: tuple[str, ...], field: str, noun: str, owner: str) -> None:
    """Raise :class:`UserError` for the first of ``keys`` that ``function`` does not take (unless it takes
    ``**kwargs``), with the nearest of its parameters: ``<field>: not an <noun> of <owner> (did you mean ...?)``."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [name for name in parameters if name not in skip]
    for key in keys:
        if key not in known:
            nearest = difflib.get_close_matches(key, known, n=1)
            guess = f'did you mean {nearest[0]}? ' if nearest else ''
            raise UserError(f'{field.format(key)}: not an {noun} of {owner} ({guess}{noun}s: {", ".join(known)})')


def check_loader_sizes(cfg) -> None:
    """``samples_per_gpu`` >= 1 (0 makes the sampler yield nothing and training wait for ever) and
    ``workers_per_gpu`` >= 0, in ``data`` and its per-split ``*_dataloader`` sections."""
    for section in LOADER_SECTIONS:
        for key, least in (('samples_per_gpu', 1), ('workers_per_gpu', 0)):
            value = _lookup(cfg, f'{section}.{key}')
            if isinstance(value, int) and value < least:
                raise UserError(f'config field {section}.{key} is {value}: expected an integer >= {least}')


def check_optimizer(cfg) -> None:
    """Build the config's torch optimizer on one dummy parameter: a misspelt key names the nearest argument, a value
    torch refuses (a negative learning rate, betas outside [0, 1)) is refused with torch's reason."""
    import torch
    from mmcv.runner.optimizer import OPTIMIZERS

    optimizer = _lookup(cfg, 'optimizer')
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get('type'), str):
        return
    optimizer_cls = OPTIMIZERS.get(optimizer['type'])
    if optimizer_cls is None:
        return  # check_registered_types names it
    kwargs = {key: value for key, value in optimizer.items() if key not in OPTIMIZER_OWN_KEYS}
    check_keywords(optimizer_cls.__init__, kwargs, ('self', 'params'), 'config field optimizer.{}', 'argument',
                   optimizer_cls.__name__)
    try:
        optimizer_cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)
    except (ValueError, TypeError, AssertionError, RuntimeError) as error:
        raise _rejected('optimizer', optimizer_cls.__name__, error) from None


def check_schedule_hooks(cfg) -> None:
    """Build ``lr_config`` / ``momentum_config`` into their hooks as mmcv's runner will (``policy='step'`` ->
    ``StepLrUpdaterHook``): an unknown policy lists the known ones, bad arguments give the hook's reason."""
    import copy

    from mmcv.runner import HOOKS
    from mmcv.utils import build_from_cfg

    for section, suffix in (('lr_config', 'LrUpdaterHook'), ('momentum_config', 'MomentumUpdaterHook')):
        hook_cfg = _lookup(cfg, section)
        if not isinstance(hook_cfg, dict):
            continue
        hook_cfg = copy.deepcopy(dict(hook_cfg))
        policy = hook_cfg.pop('policy', None)
        if not isinstance(policy, str):
            raise UserError(f'config field {section}.policy is missing (e.g. policy=\'step\')')
        policies = sorted(name[:-len(suffix)] for name in HOOKS.module_dict if name.endswith(suffix))
        hook_type = (policy.title() if policy == policy.lower() else policy) + suffix
        if hook_type not in HOOKS.module_dict:
            nearest = difflib.get_close_matches(policy.title(), policies, n=1)
            guess = f'did you mean {nearest[0]!r}? ' if nearest else ''
            raise UserError(f'config field {section}.policy: {policy!r} is not a known policy ({guess}known: '
                            f'{", ".join(policies)})')
        try:
            build_from_cfg(dict(hook_cfg, type=hook_type), HOOKS)
        except (ValueError, TypeError, AssertionError, KeyError) as error:
            raise _rejected(section, hook_type, error) from None


def check_intervals(cfg, validate: bool) -> None:
    """``checkpoint_config.interval`` is not 0 (it would crash the checkpoint rotation; a negative one, mmcv's default
    -1, saves only at the end). ``evaluation.interval`` is positive when the run validates."""
    interval = _lookup(cfg, 'checkpoint_config.interval')
    if isinstance(interval, int) and interval == 0:
        raise UserError(f'config field checkpoint_config.interval is {interval}: expected a positive number of '
                        'epochs/iterations, or -1 (save only at the end)')
    interval = _lookup(cfg, 'evaluation.interval')
    if validate and isinstance(interval, int) and interval <= 0:
        raise UserError(f'config field evaluation.interval is {interval}: expected a positive number of '
                        'epochs/iterations (or train with --no-validate)')


def _class_names(ds_cfg) -> tuple[list[str] | None, str]:
    """The class names a dataset config trains on and where they come from (``classes=`` or the dataset type)."""
    from mmdet.datasets import DATASETS

    classes = ds_cfg.get('classes')
    if isinstance(classes, str) and osp.isfile(classes):  # mmdet reads a file of names, one a line
        with open(classes) as f:
            return [line.strip() for line in f if line.strip()], f'classes file {classes}'
    if isinstance(classes, (list, tuple)):
        return list(classes), 'classes'
    dataset_cls = DATASETS.get(ds_cfg.get('type')) if isinstance(ds_cfg.get('type'), str) else None
    names = getattr(dataset_cls, 'CLASSES', None)
    return (list(names), f'{ds_cfg["type"]}.CLASSES') if names else (None, '')


def _class_heads(node, path: str) -> Iterator[tuple[str, int]]:
    """(dotted path, num_classes) of every head in a model config that predicts the dataset's classes."""
    if isinstance(node, dict):
        if isinstance(node.get('num_classes'), int) and node.get('type') not in NOT_CLASS_HEADS:
            yield path, node['num_classes']
        for key, value in node.items():
            if key not in ('train_cfg', 'test_cfg'):
                yield from _class_heads(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            yield from _class_heads(item, f'{path}.{index}')


def check_classes_match_heads(cfg, split: str) -> None:
    """Every class head's ``num_classes`` equals the number of classes of ``data.<split>`` (mmdet's
    ``NumClassCheckHook`` checks this only under the epoch runner; the iteration runner trains a mismatch)."""
    data_cfg = _lookup(cfg, f'data.{split}')
    if data_cfg in (_MISSING, None) or _lookup(cfg, 'model') is _MISSING:
        return
    for ds_cfg, ds_field in leaf_dataset_configs(data_cfg, f'data.{split}'):
        names, source = _class_names(ds_cfg)
        if names is None:
            continue
        for head, num_classes in _class_heads(cfg.model, 'model'):
            if num_classes != len(names):
                where = f'{ds_field}.classes' if source == 'classes' else f'{ds_field} ({source})'
                raise UserError(f'config field {head}.num_classes is {num_classes}, but {where} has {len(names)} '
                                'classes: set both to the same number')


def check_train_config(cfg, validate: bool) -> None:
    """The one validation pass of train.py over the merged config, before anything is built."""
    check_loader_sizes(cfg)
    check_optimizer(cfg)
    check_schedule_hooks(cfg)
    check_intervals(cfg, validate)
    check_classes_match_heads(cfg, 'train')
    metrics = _lookup(cfg, 'evaluation.metric')
    if validate and metrics not in (_MISSING, None) and _lookup(cfg, 'data.val') not in (_MISSING, None):
        check_eval_args(cfg.data.val, 'data.val', [metrics] if isinstance(metrics, str) else list(metrics), False,
                        option='config field evaluation.metric')


def check_test_config(cfg) -> None:
    """The validation pass of test.py (and the other inference entry points) over the merged config."""
    check_loader_sizes(cfg)
    check_classes_match_heads(cfg, 'test')


# ----------------------------------------------------------------------------------------------------------
# Datasets: annotation files, image files
# ----------------------------------------------------------------------------------------------------------

def pipeline_loads_masks(pipeline) -> bool:
    """Whether a data pipeline loads instance masks (``LoadAnnotations(with_mask=True)``)."""
    return any(isinstance(step, dict) and step.get('with_mask') for step in pipeline or [])


def check_annotation_files(data_cfg, field: str, config_file: str | None = None, *, need_masks: bool | None = None,
                           evaluated: bool = False, training: bool = False) -> None:
    """Raise :class:`UserError` for a missing dataset file or folder (``check_dataset_files``), an empty or
    non-JSON annotation file in ``data_cfg``, or a COCO-format file whose records would fail mid-run
    (:func:`~mmcv_custom.cli.dataset_checks.check_coco_records`; ``need_masks`` defaults to what the dataset's
    pipeline loads)."""
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
                if isinstance(content, dict) and 'images' in content and 'annotations' in content:
                    masks = pipeline_loads_masks(ds_cfg.get('pipeline')) if need_masks is None else need_masks
                    check_coco_records(content, ann_file, ds_field, need_masks=masks, evaluated=evaluated,
                                       training=training, classes=ds_cfg.get('classes'))


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
    if not isinstance(state_dict, dict) or not state_dict or not all(isinstance(v, torch.Tensor)
                                                                     for v in state_dict.values()):
        raise UserError(f'{field} {path}: holds no state_dict of tensors')
    check_finite_weights(state_dict, path, field)
    return {key[len('module.'):] if key.startswith('module.') else key: value for key, value in state_dict.items()}


def nan_tensors(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN (inf can be a legitimate mask value)."""
    import torch
    return [key for key, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and bool(torch.isnan(value).any())]


def check_finite_weights(state_dict: dict, path: str, field: str = 'checkpoint') -> None:
    """Refuse a checkpoint with NaN weights (a diverged run): it would evaluate to empty metrics without a word."""
    bad = nan_tensors(state_dict)
    if bad:
        raise UserError(f'{field} {path}: {len(bad)} of {len(state_dict)} tensors hold NaN (e.g. '
                        f'{", ".join(bad[:SHOWN_KEYS])}): the run diverged; use an earlier checkpoint')


def check_resumable(checkpoint: dict, path: str, field: str = '--resume-from') -> None:
    """A checkpoint to resume from carries the training state mmcv's ``runner.resume`` reads (``meta`` with
    ``epoch`` and ``iter``); released checkpoints hold weights only."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or not {'epoch', 'iter'} <= set(meta):
        raise UserError(f'{field} {path}: holds weights only, no training state (meta epoch/iter) to resume; to '
                        f'start a new run from these weights use --cfg-options load_from={path}')


CHECKPOINT_NAME = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


def newest_intact_checkpoint(work_dir: str, logger=None) -> str | None:
    """The newest checkpoint of ``work_dir`` (``epoch_N.pth`` / ``iter_N.pth``, highest N) that reads, can be
    resumed and holds no NaN; newer broken ones are skipped with a warning. mmdet's ``find_latest_checkpoint``
    takes whatever ``latest.pth`` names and fails on ``int('latest')`` when that link is dangling."""
    if not osp.isdir(work_dir):
        return None
    candidates = sorted(((int(match.group(1)), name) for name in os.listdir(work_dir)
                         if (match := CHECKPOINT_NAME.match(name))), reverse=True)
    for _, name in candidates:
        path = osp.join(work_dir, name)
        try:
            checkpoint = read_checkpoint(path, 'checkpoint')
            check_resumable(checkpoint, path, 'checkpoint')
            state_dict_of(checkpoint, path, 'checkpoint')
        except UserError as error:
            message = f'--auto-resume: skipping {error}'
            if logger is not None:
                logger.warning(message)
            warnings.warn(message, stacklevel=2)
            continue
        return path
    return None


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


EMA_PREFIX = 'ema_'


def drop_ema_buffers(state_dict: dict, model, path: str) -> dict:
    """``state_dict`` without the ``ema_*`` buffers that mmdet's EMA hooks (``ExpMomentumEMAHook``, ...) add to the
    model during training and save with it (the Cascade L/XL 3x checkpoints hold 277 of them), where ``model`` has
    none: the hook swaps the EMA weights into the model's own tensors before saving, so those are what a test or a
    demo loads. Only ``ema_<key with dots as underscores>`` of a key of ``model`` is dropped (any other extra key
    stays, and the strict check refuses it); one log line says how many. Resuming an EMA run keeps them:
    ``train.py`` hands the checkpoint to the EMA hook, which reloads it once it has registered its buffers."""
    model_keys = model.state_dict().keys()
    ema_names = {EMA_PREFIX + key.replace('.', '_') for key in model_keys}
    dropped = [key for key in state_dict if key in ema_names and key not in model_keys]
    if not dropped:
        return state_dict
    from mmdet.utils import get_root_logger
    get_root_logger().info(f'{path}: dropped its {len(dropped)} ema_* buffers (an EMA training run\'s; the model\'s '
                           'own tensors in it hold the EMA weights)')
    kept = set(state_dict) - set(dropped)
    return {key: value for key, value in state_dict.items() if key in kept}


def load_checkpoint_checked(model, path: str, target: str, allow_partial: bool = False,
                            field: str = 'checkpoint') -> dict:
    """Read ``path`` and load it into ``model``; returns the checkpoint. A checkpoint of another model is refused
    (:func:`check_checkpoint_matches`) unless ``allow_partial`` (then mmcv's non-strict load, which warns)."""
    from mmcv.runner import load_state_dict
    from mmdet.utils import get_root_logger

    checkpoint = read_checkpoint(path, field)
    state_dict = drop_ema_buffers(state_dict_of(checkpoint, path, field), model, path)
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
                    plot_dir: str | None = None, option: str = '--eval') -> None:
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
                    raise UserError(f'{option} {metric}: not a metric of {dataset_type} ({field}.type); {guess}'
                                    f'choose from {", ".join(metrics)}')
            if not multi and len(eval_metrics) > 1:
                raise UserError(f'{option} {" ".join(eval_metrics)}: {dataset_type} evaluates one metric per run; '
                                f'choose one of {", ".join(metrics)}')
    if format_only and dataset_cls.format_results is CustomDataset.format_results:
        raise UserError(f'--format-only: {dataset_type} ({field}.type) has no result format to write; use --out '
                        'FILE.pkl to keep the raw results')


def check_eval_options(data_cfg, field: str, eval_options: dict | None, format_only: bool) -> None:
    """``--eval-options`` are keyword arguments of the dataset's ``evaluate`` (``format_results`` with
    ``--format-only``): an unknown one, or a ``jsonfile_prefix`` that cannot be written, is refused before the
    inference (mmdet fails after it). ``--format-only`` of a COCO-style dataset needs a ``jsonfile_prefix``: without
    one mmdet writes the results into a temporary folder and deletes it."""
    from mmdet.datasets import DATASETS, CocoDataset

    options = dict(eval_options or {})
    dataset_type = data_cfg.get('type') if isinstance(data_cfg, dict) else None
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else None
    if dataset_cls is None:
        return
    method = dataset_cls.format_results if format_only else dataset_cls.evaluate
    check_keywords(method, options, ('self', 'results', 'metric', 'logger'), '--eval-options {}', 'option',
                   f'{dataset_type}.{method.__name__}')
    prefix = options.get('jsonfile_prefix')
    if isinstance(prefix, str):
        check_writable_file(prefix, '--eval-options jsonfile_prefix')
    elif format_only and issubclass(dataset_cls, CocoDataset):
        raise UserError('--format-only: pass --eval-options jsonfile_prefix=PATH/NAME to say where the result files '
                        'go (without it mmdet writes them into a temporary folder and deletes them)')


def check_device(device: str, field: str = '--device') -> None:
    """``device`` is a torch device this machine has (``cpu``, ``cuda``, ``cuda:N``); CUDA itself may be missing (the
    entry points fall back to the CPU or say so)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ('cpu', 'cuda'):
        raise UserError(f'{field} {device}: not a device (expected cpu, cuda or cuda:N)')
    if parsed.type == 'cuda' and parsed.index is not None and torch.cuda.is_available() \
            and parsed.index >= torch.cuda.device_count():
        raise UserError(f'{field} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)')


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pbm', '.pnm',
                  '.jp2', '.exr', '.hdr', '.sr', '.ras')   # what OpenCV's imwrite picks an encoder for
MIN_RESIZED_SIDE = 32  # the backbones' deepest stride: a thinner input leaves less than one feature pixel


def check_image_output(path: str, field: str) -> None:
    """An output picture path whose extension OpenCV can encode (it picks the format by the extension)."""
    if osp.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
        raise UserError(f'{field} {path}: expected an image file name ending in .jpg, .png, ... (the extension '
                        'chooses the format)')


def _test_resize(pipeline) -> tuple[tuple[int, int] | None, bool]:
    """(img_scale, keep_ratio) of a test pipeline's first resize (inside ``MultiScaleFlipAug`` or not)."""
    for step in pipeline or []:
        if not isinstance(step, dict):
            continue
        if step.get('type') == 'MultiScaleFlipAug':
            scale = step.get('img_scale') or step.get('scale_factor')
            inner = [t for t in step.get('transforms', []) if isinstance(t, dict) and t.get('type') == 'Resize']
            keep_ratio = inner[0].get('keep_ratio', True) if inner else True
            scale = scale[0] if isinstance(scale, list) else scale
            return (tuple(scale) if isinstance(scale, tuple) and len(scale) == 2 else None), keep_ratio
        if step.get('type') == 'Resize' and step.get('img_scale'):
            scale = step['img_scale']
            scale = scale[0] if isinstance(scale, list) else scale
            return (tuple(scale) if len(scale) == 2 else None), step.get('keep_ratio', True)
    return None, True


def check_image_size(height: int, width: int, pipeline, field: str) -> None:
    """An image whose test-time resize (``img_scale``, ``keep_ratio``) leaves a side under
    :data:`MIN_RESIZED_SIDE` pixels (a 4000x4 strip) cannot go through the detector: refused with its size."""
    scale, keep_ratio = _test_resize(pipeline)
    if scale is None or not keep_ratio:
        resized = (height, width) if scale is None else (scale[1], scale[0])
    else:
        factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
        resized = (int(height * factor + 0.5), int(width * factor + 0.5))
    if min(resized) < MIN_RESIZED_SIDE:
        raise UserError(f'{field}: the image is {width}x{height} pixels; resized for the model it would be '
                        f'{resized[1]}x{resized[0]}, under the {MIN_RESIZED_SIDE} pixels a side the detector needs')


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
