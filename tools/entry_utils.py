"""What train.py and test.py share beyond mmdet's own scripts.

* One-line user errors: :class:`UserError` and :func:`run_cli` turn a bad config file, a config field of the wrong
  type, a missing or empty annotation file or a missing image into one line on stderr and exit status 1.
* Distributed runs without CUDA: :func:`init_distributed` starts a gloo process group on the CPU (mmcv's
  ``init_dist`` needs a GPU per process); the CPU DDP wrapper and mmdet's CUDA-only assumptions are patched by
  ``mmcv_custom.compat.enable_cpu_distributed`` (all compatibility patches live in that one module).
* Unreadable images: :func:`guard_image_loading` makes a training run warn about and skip an image it cannot
  decode, and a test run stop with the image's name (a skipped test image would silently change the metrics).
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
import random
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from numbers import Real

import torch
import torch.distributed as dist
from mmdet.datasets.pipelines import LoadImageFromFile


class UserError(Exception):
    """A problem with the user's input (config, data, arguments): reported as one line, exit status 1."""


def run_cli(main: Callable[[], None], program: str) -> None:
    """Run ``main``; a :class:`UserError` (also one raised in a data-loader worker) becomes one stderr line."""
    try:
        main()
    except UserError as error:
        print(f'{program}: error: {_first_line_of_user_error(error)}', file=sys.stderr)
        sys.exit(1)


def _first_line_of_user_error(error: Exception) -> str:
    # A UserError raised in a DataLoader worker is re-raised with the worker's traceback as its message;
    # its last line is "<module>.UnreadableImageError: <our message>".
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and 'Traceback' in str(error):
        return lines[-1].split('Error: ', 1)[-1]
    return lines[0] if lines else type(error).__name__


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


def _lookup(cfg, dotted: str):
    node = getattr(cfg, '_cfg_dict', cfg)  # an mmcv Config wraps its ConfigDict (a dict subclass)
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


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


def load_config(path: str, cfg_options: dict | None = None):
    """``mmcv.Config.fromfile`` with ``--cfg-options`` merged, ``${key}`` substituted and field types checked."""
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
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Datasets: annotation files, image files, unreadable images
# ----------------------------------------------------------------------------------------------------------

def _dataset_cfgs(data_cfg) -> Iterator[dict]:
    """Every leaf dataset config inside wrappers (RepeatDataset, ClassBalancedDataset, lists...)."""
    if isinstance(data_cfg, (list, tuple)):
        for item in data_cfg:
            yield from _dataset_cfgs(item)
    elif isinstance(data_cfg, dict):
        if 'dataset' in data_cfg:
            yield from _dataset_cfgs(data_cfg['dataset'])
        elif 'datasets' in data_cfg:
            yield from _dataset_cfgs(data_cfg['datasets'])
        else:
            yield data_cfg


def check_annotation_files(data_cfg, field: str, config_file: str | None = None) -> None:
    """Raise :class:`UserError` for a missing dataset file or folder (the plugin's ``check_dataset_files``), or an
    empty or non-JSON annotation file in ``data_cfg``."""
    from mmdet_custom.datasets.checks import DatasetFileError, check_dataset_files
    try:
        check_dataset_files(data_cfg, field, config_file=config_file)
    except DatasetFileError as error:
        raise UserError(str(error)) from None
    for ds_cfg in _dataset_cfgs(data_cfg):
        ann_files = ds_cfg.get('ann_file')
        for ann_file in ann_files if isinstance(ann_files, (list, tuple)) else [ann_files]:
            if not isinstance(ann_file, str) or '://' in ann_file:
                continue
            if not osp.isfile(ann_file):
                raise UserError(f'{field}.ann_file: annotation file {ann_file} does not exist')
            if osp.getsize(ann_file) == 0:
                raise UserError(f'{field}.ann_file: annotation file {ann_file} is empty')
            if ann_file.endswith('.json'):
                try:
                    with open(ann_file) as f:
                        content = json.load(f)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    raise UserError(f'{field}.ann_file: annotation file {ann_file} is not valid JSON '
                                    f'({error})') from None
                if isinstance(content, dict) and 'images' in content and not content['images']:
                    raise UserError(f'{field}.ann_file: annotation file {ann_file} lists no images')


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


class UnreadableImageError(UserError):
    """An image file exists but cannot be read or decoded."""


class GuardedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that skips (training) or names (testing) an image it cannot decode."""

    on_error = 'raise'

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


def guard_image_loading(dataset, on_error: str) -> int:
    """Replace every ``LoadImageFromFile`` in ``dataset``'s pipelines by the guarded variant; returns the count.

    ``on_error='skip'`` (training): warn and skip the image; ``'raise'`` (testing): one-line error naming it.
    """
    replaced = 0
    for leaf in _leaf_datasets(dataset):
        pipeline = getattr(leaf, 'pipeline', None)
        transforms = getattr(pipeline, 'transforms', None)
        if not transforms:
            continue
        for i, transform in enumerate(transforms):
            if type(transform) is LoadImageFromFile:
                guarded = GuardedLoadImageFromFile.__new__(GuardedLoadImageFromFile)
                guarded.__dict__.update(transform.__dict__)
                guarded.on_error = on_error
                transforms[i] = guarded
                replaced += 1
    return replaced


# ----------------------------------------------------------------------------------------------------------
# Distributed runs, also without CUDA
# ----------------------------------------------------------------------------------------------------------

def _slurm_master_addr() -> str:
    node_list = os.environ['SLURM_NODELIST']
    try:
        return subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1').strip() or '127.0.0.1'
    except OSError:
        return '127.0.0.1'


def init_distributed(launcher: str, dist_params: dict | None, logger: logging.Logger | None = None) -> str:
    """Initialise the process group for ``launcher``; returns the backend.

    With CUDA this is mmcv's ``init_dist`` (backend from ``dist_params``, usually nccl). Without CUDA the group
    uses gloo on the CPU: mmcv would call ``torch.cuda.set_device``. ``pytorch`` reads torchrun's environment;
    ``slurm`` and ``mpi`` translate their environment into it (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE).
    """
    from mmcv.runner import init_dist
    dist_params = dict(dist_params or {})
    if torch.cuda.is_available():
        init_dist(launcher, **dist_params)
        return dist_params.get('backend', 'nccl')
    if launcher == 'slurm':
        os.environ.setdefault('MASTER_PORT', str(dist_params.get('port', 29500)))
        os.environ.setdefault('MASTER_ADDR', _slurm_master_addr())
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    elif launcher == 'mpi':
        os.environ.setdefault('MASTER_PORT', str(dist_params.get('port', 29500)))
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    elif launcher != 'pytorch':
        raise UserError(f'--launcher {launcher}: unknown launcher')
    for variable in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE'):
        if variable not in os.environ:
            raise UserError(f'--launcher {launcher}: environment variable {variable} is not set (start the job '
                            'with dist_train.sh / torchrun, or with srun for slurm)')
    dist.init_process_group(backend='gloo')
    if logger is not None and dist_params.get('backend', 'gloo') != 'gloo':
        logger.info(f'no CUDA: distributed backend gloo on the CPU instead of {dist_params["backend"]}')
    return 'gloo'
