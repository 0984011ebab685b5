"""Train a detector: mmdet 2.28's tools/train.py with the InternImage plugin, the original's arguments, and

* checkpoints written atomically (``AtomicCheckpointHook``), so ``--auto-resume`` always finds a complete one and a
  full disk leaves the previous checkpoint intact;
* distributed training also without CUDA (gloo process group on the CPU);
* SyncBN converted to BN in single-process runs (the Cascade configs use SyncBN in their heads);
* one-line errors (``mmcv_custom.cli``) for a bad config, a config field of the wrong type or an unknown ``type=``,
  missing/empty/non-JSON annotation files, missing images, an unwritable work dir, a truncated ``--resume-from`` /
  ``load_from`` file or a ``--resume-from`` checkpoint of another model (``--allow-partial-checkpoint`` to resume
  anyway); an image that cannot be decoded during training is skipped with a warning;
* pictures of the run in the work dir (``loss_lr.png``, ``val_map.png``; ``TrainingCurvesHook``) and TensorBoard
  event files with ``--cfg-options log_config.tensorboard=True``.

    python train.py CONFIG [--work-dir DIR] [--resume-from CKPT | --auto-resume] [--cfg-options k=v ...] [--debug]
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import os.path as osp
import sys
import time
import warnings

import mmcv
import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info
from mmcv.utils import get_git_hash
from mmdet import __version__ as mmdet_version
from mmdet.apis import init_random_seed, set_random_seed, train_detector
from mmdet.models import build_detector
from mmdet.utils import collect_env, get_device, get_root_logger, setup_multi_processes

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmdet_custom  # noqa: F401  (stack check, compatibility patches, registrations)
from mmcv_custom.cli.checks import (
    PARTIAL_FLAG,
    KeyValueAction,
    build_dataset_checked,
    check_annotation_files,
    check_checkpoint_matches,
    check_dataset,
    check_resumable,
    check_train_config,
    check_writable_dir,
    drop_ema_buffers,
    load_config,
    newest_intact_checkpoint,
    read_checkpoint,
    state_dict_of,
)
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli
from mmcv_custom.nonfinite_loss import ACTIONS as NONFINITE_ACTIONS  # also registers NonFiniteLossHook
from mmdet_custom.apis import revert_sync_bn_if_single_process
from mmdet_custom.apis.amp import AMP_DTYPES, apply_mixed_precision, configure_mixed_precision
from mmdet_custom.apis.batch_size import apply_auto_scale_lr, use_gradient_accumulation
from mmdet_custom.apis.distributed import enable_cpu_distributed, init_distributed
from mmdet_custom.datasets import guard_image_loading


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume-from', help='the checkpoint file to resume from')
    parser.add_argument('--auto-resume', action='store_true',
                        help='resume from the latest complete checkpoint in the work dir, if any')
    parser.add_argument('--no-validate', action='store_true',
                        help='whether not to evaluate the checkpoint during training')
    group_gpus = parser.add_mutually_exclusive_group()
    group_gpus.add_argument('--gpus', type=int,
                            help='(Deprecated, please use --gpu-id) number of gpus to use '
                                 '(only applicable to non-distributed training)')
    group_gpus.add_argument('--gpu-ids', type=int, nargs='+',
                            help='(Deprecated, please use --gpu-id) ids of gpus to use '
                                 '(only applicable to non-distributed training)')
    group_gpus.add_argument('--gpu-id', type=int, default=0,
                            help='id of gpu to use (only applicable to non-distributed training)')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument('--diff-seed', action='store_true',
                        help='Whether or not set different seeds for different ranks')
    parser.add_argument('--deterministic', action='store_true',
                        help='whether to set deterministic options for CUDNN backend.')
    parser.add_argument('--options', nargs='+', action=KeyValueAction,
                        help='(Deprecated, use --cfg-options) override some settings in the used config')
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction,
                        help='override some settings in the used config, the key-value pair in xxx=yyy format will '
                             'be merged into config file. If the value to be overwritten is a list, it should be '
                             'like key="[a,b]" or key=a,b. It also allows nested list/tuple values, e.g. '
                             'key="[(a,b),(c,d)]". Note that the quotation marks are necessary and that no white '
                             'space is allowed.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES),
                        help='mixed precision: fp16 (GPU; mmdet\'s fp16 with dynamic loss scaling) or bf16 (CPU or GPU '
                             'autocast); same as amp = dict(dtype=...) in the config')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale optimizer.lr by the global batch (processes x samples_per_gpu x accumulated '
                             'iterations) over the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument('--requeue-on-signal', action='store_true',
                        help='on SIGUSR1 (Slurm: --signal=USR1@T, scancel --signal=USR1) save a checkpoint, requeue '
                             'the Slurm job and stop (REQUEUE=1 sh slurm_train.sh passes it)')
    parser.add_argument(PARTIAL_FLAG, action='store_true',
                        help='let --resume-from load a checkpoint of another model (only the matching tensors); '
                             'without it such a checkpoint is refused')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.options and args.cfg_options:
        parser.error('--options and --cfg-options cannot be both specified, '
                     '--options is deprecated in favor of --cfg-options')
    if args.options:
        warnings.warn('--options is deprecated in favor of --cfg-options')
        args.cfg_options = args.options
    if args.resume_from is not None and not osp.isfile(args.resume_from):
        parser.error(f'--resume-from: checkpoint file {args.resume_from} does not exist')
    return args


def use_atomic_checkpoints(cfg) -> None:
    """Save checkpoints through AtomicCheckpointHook unless the config asks for another hook type."""
    checkpoint_config = cfg.get('checkpoint_config')
    if checkpoint_config is not None and checkpoint_config.get('type', 'CheckpointHook') == 'CheckpointHook':
        checkpoint_config['type'] = 'AtomicCheckpointHook'


def use_training_curves(cfg) -> None:
    """Pictures of the run in the work dir (``loss_lr.png``, ``val_map.png``): ``TrainingCurvesHook``."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == 'TrainingCurvesHook' for hook in hooks):
        cfg.custom_hooks = hooks + [dict(type='TrainingCurvesHook', priority='VERY_LOW')]  # after the loggers


def use_tensorboard(cfg) -> None:
    """``--cfg-options log_config.tensorboard=True`` adds mmcv's ``TensorboardLoggerHook`` (event files in
    ``<work_dir>/tf_logs``) next to the text logger."""
    log_config = cfg.get('log_config')
    if log_config is None or not log_config.pop('tensorboard', False):
        return
    if importlib.util.find_spec('tensorboard') is None:
        raise UserError('config field log_config.tensorboard: the tensorboard package is not installed '
                        '(pip install -c requirements/constraints.txt tensorboard, or make setup)')
    if not any(hook.get('type') == 'TensorboardLoggerHook' for hook in log_config.hooks):
        log_config.hooks.append(dict(type='TensorboardLoggerHook'))


def check_start_checkpoints(cfg, model, args) -> None:
    """A truncated or corrupt ``--resume-from`` / ``load_from`` file, or a ``--resume-from`` checkpoint of another
    model, is a one-line error before training starts (mmcv would fail with a traceback, or warn and resume a
    partly random model). ``load_from`` may be partial on purpose (fine-tuning with another head), as in mmcv."""
    if cfg.get('resume_from'):
        field = '--resume-from' if args.resume_from else 'config field resume_from'
        checkpoint = read_checkpoint(cfg.resume_from, field)
        check_resumable(checkpoint, cfg.resume_from, field)
        state_dict = state_dict_of(checkpoint, cfg.resume_from, field)
        # an EMA run's ema_* buffers: the EMA hook restores them once it has registered them (mmcv_custom.ema_resume)
        state_dict = drop_ema_buffers(state_dict, model, cfg.resume_from)
        if not args.allow_partial_checkpoint:
            check_checkpoint_matches(state_dict, model, cfg.resume_from, f'the model of {args.config}', field,
                                     hint=f'; pass {PARTIAL_FLAG} to resume with the matching tensors only')
    if cfg.get('load_from') and not cfg.get('resume_from'):
        state_dict_of(read_checkpoint(cfg.load_from, 'config field load_from'), cfg.load_from,
                      'config field load_from')


def use_nonfinite_loss_guard(cfg) -> None:
    """``NonFiniteLossHook``: a NaN/inf loss stops the run (config ``nonfinite_loss='stop'``, the default) or skips
    the step (``'skip'``); ``'off'`` trains on as mmcv does."""
    action = cfg.get('nonfinite_loss', 'stop')
    if action not in NONFINITE_ACTIONS:
        raise UserError(f'config field nonfinite_loss: {action!r}: expected one of {", ".join(NONFINITE_ACTIONS)}')
    hooks = list(cfg.get('custom_hooks') or [])
    if action != 'off' and not any(hook.get('type') == 'NonFiniteLossHook' for hook in hooks):
        # priority HIGH: before the optimizer hook (ABOVE_NORMAL), so a skipped step never reaches the weights
        cfg.custom_hooks = hooks + [dict(type='NonFiniteLossHook', action=action, priority='HIGH')]


def resolve_auto_resume(cfg, logger) -> None:
    """``--auto-resume``: the newest intact checkpoint of the work dir (a truncated, NaN or dangling newest one is
    skipped), resolved here so that the checks of ``--resume-from`` apply to it too."""
    if cfg.get('auto_resume') and not cfg.get('resume_from'):
        cfg.resume_from = newest_intact_checkpoint(cfg.work_dir, logger)
        if cfg.resume_from:
            logger.info(f'--auto-resume: resuming from {cfg.resume_from}')
    cfg.auto_resume = False  # mmdet's own look-up trusts latest.pth: it is done


def use_batch_options(cfg, args, logger) -> None:
    """Gradient accumulation (with fp16 too) and the learning rate for the global batch: one rule,
    ``mmdet_custom.apis.batch_size``; mmdet's own ``auto_scale_lr`` (which ignores accumulation) is never used."""
    accumulation = use_gradient_accumulation(cfg)
    if accumulation:
        logger.info(accumulation)
    if args.auto_scale_lr or (cfg.get('auto_scale_lr') or {}).get('enable'):
        apply_auto_scale_lr(cfg, get_dist_info()[1], args.config, logger)


def use_slurm_requeue(cfg) -> None:
    """``--requeue-on-signal``: ``SlurmRequeueHook`` saves, requeues and stops on SIGUSR1, after everything else
    of the iteration (priority LOWEST)."""
    from mmcv_custom.slurm_requeue import SlurmRequeueHook  # noqa: F401  (registers it)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == 'SlurmRequeueHook' for hook in hooks):
        cfg.custom_hooks = hooks + [dict(type='SlurmRequeueHook', priority='LOWEST')]


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, required=('model', 'data.train'))
    validate = not args.no_validate and cfg.data.get('val') is not None
    check_train_config(cfg, validate)
    use_nonfinite_loss_guard(cfg)
    use_training_curves(cfg)
    use_tensorboard(cfg)

    setup_multi_processes(cfg)
    if cfg.get('cudnn_benchmark', False):
        torch.backends.cudnn.benchmark = True
    # TF32 for matmul and cuDNN, as the original training script sets it (no effect on the CPU or before Ampere).
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_writable_dir(cfg.work_dir, '--work-dir' if args.work_dir is not None else 'config field work_dir')
    if args.resume_from is not None:
        cfg.resume_from = args.resume_from
    cfg.auto_resume = args.auto_resume
    if args.gpus is not None:
        cfg.gpu_ids = range(1)
        warnings.warn('`--gpus` is deprecated because we only support single GPU mode in non-distributed '
                      'training. Use `gpus=1` now.')
    if args.gpu_ids is not None:
        cfg.gpu_ids = args.gpu_ids[0:1]
        warnings.warn('`--gpu-ids` is deprecated, please use `--gpu-id`. Because we only support single GPU mode '
                      'in non-distributed training. Use the first GPU in `gpu_ids` now.')
    if args.gpus is None and args.gpu_ids is None:
        cfg.gpu_ids = [args.gpu_id]

    # Data problems are user errors: check the annotation files before anything slow happens.
    check_annotation_files(cfg.data.train, 'data.train', args.config, training=True)
    if validate:
        metrics = cfg.get('evaluation', {}).get('metric', [])
        check_annotation_files(cfg.data.val, 'data.val', args.config, evaluated=True,
                               need_masks='segm' in ([metrics] if isinstance(metrics, str) else metrics))

    # init distributed env first, since logger depends on the dist info.
    distributed = args.launcher != 'none'
    backend = None
    if distributed:
        backend = init_distributed(args.launcher, cfg.get('dist_params'))
        _, world_size = get_dist_info()
        cfg.gpu_ids = range(world_size)
        enable_cpu_distributed()

    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    rank, _ = get_dist_info()
    if rank == 0:
        cfg.dump(osp.join(cfg.work_dir, osp.basename(args.config)))
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    log_file = osp.join(cfg.work_dir, f'{timestamp}.log')
    logger = get_root_logger(log_file=log_file, log_level=cfg.log_level)
    if args.amp is not None:
        cfg.amp = dict(dtype=args.amp)
    configure_mixed_precision(cfg, get_device(), logger)  # fp16 becomes cfg.fp16 before the optimizer hook is chosen
    use_batch_options(cfg, args, logger)
    if args.requeue_on_signal:
        use_slurm_requeue(cfg)

    meta = dict()
    env_info = '\n'.join(f'{k}: {v}' for k, v in collect_env().items())
    dash_line = '-' * 60 + '\n'
    logger.info('Environment info:\n' + dash_line + env_info + '\n' + dash_line)
    meta['env_info'] = env_info
    meta['config'] = cfg.pretty_text
    logger.info(f'Distributed training: {distributed}' + (f' (backend {backend})' if distributed else ''))
    logger.info(f'Config:\n{cfg.pretty_text}')

    cfg.device = get_device()
    seed = init_random_seed(args.seed, device=cfg.device)
    seed = seed + dist.get_rank() if args.diff_seed else seed
    logger.info(f'Set random seed to {seed}, deterministic: {args.deterministic}')
    set_random_seed(seed, deterministic=args.deterministic)
    if args.deterministic:
        # cuDNN flags alone leave CPU/CUDA kernels free to pick non-deterministic algorithms
        torch.use_deterministic_algorithms(True, warn_only=True)
    cfg.seed = seed
    meta['seed'] = seed
    meta['exp_name'] = osp.basename(args.config)

    # the datasets first: data errors surface before the slow part.
    # An image that cannot be decoded is skipped with a warning (GuardedLoadImageFromFile).
    guard_image_loading(cfg.data.train, on_error='skip')
    datasets = [build_dataset_checked(cfg.data.train, 'data.train')]
    labels = ['data.train']
    if len(cfg.workflow) == 2:
        assert 'val' in [mode for (mode, _) in cfg.workflow]
        val_dataset = copy.deepcopy(cfg.data.val)
        val_dataset.pipeline = cfg.data.train.get('pipeline', cfg.data.train.dataset.get('pipeline'))
        datasets.append(build_dataset_checked(val_dataset, 'data.val'))
        labels.append('data.val')
    for dataset, label in zip(datasets, labels):
        check_dataset(dataset, label)
    if validate:  # a missing validation image would otherwise stop the run at its first validation
        val_cfg = copy.deepcopy(cfg.data.val)
        if isinstance(val_cfg, dict):
            val_cfg.test_mode = True  # as mmdet builds it for the evaluation hook
        check_dataset(build_dataset_checked(val_cfg, 'data.val'), 'data.val')
    resolve_auto_resume(cfg, logger)

    try:
        model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    except (KeyError, TypeError, ValueError, AssertionError) as error:
        raise UserError(f'config field model: {type(error).__name__}: {error}') from None
    model.init_weights()
    model = revert_sync_bn_if_single_process(model, distributed, logger)
    apply_mixed_precision(cfg, model, cfg.device)
    check_start_checkpoints(cfg, model, args)

    use_atomic_checkpoints(cfg)
    if cfg.checkpoint_config is not None:
        # save mmdet version, config file content and class names in checkpoints as meta data
        cfg.checkpoint_config.meta = dict(mmdet_version=mmdet_version + get_git_hash()[:7],
                                          CLASSES=datasets[0].CLASSES)
    model.CLASSES = datasets[0].CLASSES
    train_detector(model, datasets, cfg, distributed=distributed, validate=(not args.no_validate),
                   timestamp=timestamp, meta=meta)


if __name__ == '__main__':
    run_cli(main, 'train.py')
