"""Test (and evaluate) a detector: the original's test.py (mmdet 2.28 tools/test.py) with the InternImage plugin,

plus distributed testing without CUDA (gloo), SyncBN converted to BN in single-process runs, one-line errors
(``mmcv_custom.cli``) for a bad config, a truncated checkpoint or one of another model (``--allow-partial-checkpoint``
to load it anyway), ``--eval`` metrics the dataset cannot compute (checked before anything is built), unwritable
output folders, missing/empty annotation files, missing or undecodable images; and ``--plot-dir`` for per-class AP
and precision-recall pictures of the COCO evaluation; ``--tta`` for test-time augmentation
(``mmdet_custom.apis.tta``).

    python test.py CONFIG CHECKPOINT --eval bbox segm [--out results.pkl] [--show-dir DIR] [--work-dir DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import os.path as osp
import sys
import time
import warnings

import mmcv
import torch
from mmcv.cnn import fuse_conv_bn
from mmcv.runner import get_dist_info, wrap_fp16_model
from mmdet.apis import multi_gpu_test, single_gpu_test
from mmdet.datasets import build_dataloader, replace_ImageToTensor
from mmdet.models import build_detector
from mmdet.utils import build_dp, compat_cfg, get_device, get_root_logger, setup_multi_processes

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmdet_custom  # noqa: F401  (stack check, compatibility patches, registrations)
from mmcv_custom.cli.checks import (
    PARTIAL_FLAG,
    KeyValueAction,
    build_dataset_checked,
    check_annotation_files,
    check_dataset,
    check_eval_args,
    check_eval_options,
    check_test_config,
    check_writable_dir,
    check_writable_file,
    load_checkpoint_checked,
    load_config,
)
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli
from mmdet_custom.apis import revert_sync_bn_if_single_process
from mmdet_custom.apis.amp import add_precision_argument, apply_inference_precision
from mmdet_custom.apis.compile import add_compile_argument, compile_backbone
from mmdet_custom.apis.distributed import build_ddp_any_device, enable_cpu_distributed, init_distributed
from mmdet_custom.apis.eval_plots import write_eval_plots
from mmdet_custom.apis.tta import apply_tta
from mmdet_custom.datasets import guard_image_loading


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='output result file in pickle format')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='Whether to fuse conv and bn, this will slightly increase the inference speed')
    parser.add_argument('--gpu-ids', type=int, nargs='+',
                        help='(Deprecated, please use --gpu-id) ids of gpus to use '
                             '(only applicable to non-distributed testing)')
    parser.add_argument('--gpu-id', type=int, default=0,
                        help='id of gpu to use (only applicable to non-distributed testing)')
    parser.add_argument('--format-only', action='store_true',
                        help='Format the output results without perform evaluation. It is useful when you want to '
                             'format the result to a specific format and submit it to the test server')
    parser.add_argument('--eval', type=str, nargs='+',
                        help='evaluation metrics, which depends on the dataset, e.g., "bbox", "segm", "proposal" for '
                             'COCO, and "mAP", "recall" for PASCAL VOC')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved')
    parser.add_argument('--show-score-thr', type=float, default=0.3, help='score threshold (default: 0.3)')
    parser.add_argument('--gpu-collect', action='store_true', help='whether to use gpu to collect results.')
    parser.add_argument('--tmpdir', help='tmp directory used for collecting results from multiple workers, '
                                         'available when gpu-collect is not specified')
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction,
                        help='override some settings in the used config, the key-value pair in xxx=yyy format will '
                             'be merged into config file. If the value to be overwritten is a list, it should be '
                             'like key="[a,b]" or key=a,b. It also allows nested list/tuple values, e.g. '
                             'key="[(a,b),(c,d)]". Note that the quotation marks are necessary and that no white '
                             'space is allowed.')
    parser.add_argument('--options', nargs='+', action=KeyValueAction,
                        help='(Deprecated, use --eval-options) custom options for evaluation')
    parser.add_argument('--eval-options', nargs='+', action=KeyValueAction,
                        help='custom options for evaluation, the key-value pair in xxx=yyy format will be kwargs for '
                             'dataset.evaluate() function')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(PARTIAL_FLAG, action='store_true',
                        help='load a checkpoint of another model (only the matching tensors; the rest stays '
                             'random); without it such a checkpoint is refused')
    parser.add_argument('--plot-dir', help='write per-class AP and precision-recall plots of the COCO evaluation '
                                           '(per_class_ap_<bbox|segm>.png/.json, precision_recall_<bbox|segm>.png)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the scales and flip of the config's `tta` dict (default: the "
                             "test scale plus a horizontal flip), merged by the model's aug_test")
    add_precision_argument(parser)
    add_compile_argument(parser)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.options and args.eval_options:
        parser.error('--options and --eval-options cannot be both specified, '
                     '--options is deprecated in favor of --eval-options')
    if args.options:
        warnings.warn('--options is deprecated in favor of --eval-options')
        args.eval_options = args.options
    if not (args.out or args.eval or args.format_only or args.show or args.show_dir):
        parser.error('Please specify at least one operation (save/eval/format/show the results / save the results) '
                     'with the argument "--out", "--eval", "--format-only", "--show" or "--show-dir"')
    if args.eval and args.format_only:
        parser.error('--eval and --format-only cannot be both specified')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out}: the output file must be a .pkl or .pickle file')
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        parser.error(f'checkpoint file {args.checkpoint} does not exist')
    return args


def prepare_test_cfg(cfg):
    """The original's test-time config edits: no pretrained weights, test_mode, batched test pipelines."""
    cfg = compat_cfg(cfg)
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    elif 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    neck = cfg.model.get('neck')
    for neck_cfg in neck if isinstance(neck, list) else ([neck] if neck else []):
        if neck_cfg.get('rfp_backbone') and neck_cfg.rfp_backbone.get('pretrained'):
            neck_cfg.rfp_backbone.pretrained = None
    test_cfgs = cfg.data.test if isinstance(cfg.data.test, list) else [cfg.data.test]
    for ds_cfg in test_cfgs:
        ds_cfg.test_mode = True
        if cfg.data.test_dataloader.get('samples_per_gpu', 1) > 1:
            # Replace 'ImageToTensor' to 'DefaultFormatBundle'
            ds_cfg.pipeline = replace_ImageToTensor(ds_cfg.pipeline)
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, required=('model', 'data.test'))
    check_test_config(cfg)
    cfg = prepare_test_cfg(cfg)
    if args.tta:
        print(f'[test.py] {apply_tta(cfg)}')
    # Arguments a run could only reject after the whole inference are checked before anything is built.
    check_eval_args(cfg.data.test, 'data.test', args.eval, args.format_only, args.plot_dir)
    check_eval_options(cfg.data.test, 'data.test', args.eval_options, args.format_only)
    for field, folder in (('--work-dir', args.work_dir), ('--show-dir', args.show_dir), ('--plot-dir', args.plot_dir)):
        if folder is not None:
            check_writable_dir(folder, field)
    if args.out is not None:
        check_writable_file(args.out, '--out')
    setup_multi_processes(cfg)
    if cfg.get('cudnn_benchmark', False):
        torch.backends.cudnn.benchmark = True

    if args.gpu_ids is not None:
        cfg.gpu_ids = args.gpu_ids[0:1]
        warnings.warn('`--gpu-ids` is deprecated, please use `--gpu-id`. Because we only support single GPU mode '
                      'in non-distributed testing. Use the first GPU in `gpu_ids` now.')
    else:
        cfg.gpu_ids = [args.gpu_id]
    cfg.device = get_device()

    check_annotation_files(cfg.data.test, 'data.test', args.config, evaluated=bool(args.eval),
                           need_masks='segm' in (args.eval or []))
    distributed = args.launcher != 'none'
    if distributed:
        init_distributed(args.launcher, cfg.get('dist_params'))
        enable_cpu_distributed()
    logger = get_root_logger(log_level=cfg.get('log_level', 'INFO'))

    test_loader_cfg = {
        **dict(samples_per_gpu=1, workers_per_gpu=2, dist=distributed, shuffle=False),
        **cfg.data.get('test_dataloader', {}),
    }
    rank, _ = get_dist_info()
    json_file = None
    if args.work_dir is not None and rank == 0:
        mmcv.mkdir_or_exist(osp.abspath(args.work_dir))
        timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
        json_file = osp.join(args.work_dir, f'eval_{timestamp}.json')

    guard_image_loading(cfg.data.test, on_error='raise')  # a skipped test image would silently change the metrics
    dataset = build_dataset_checked(cfg.data.test, 'data.test')
    check_dataset(dataset, 'data.test')
    data_loader = build_dataloader(dataset, **test_loader_cfg)

    cfg.model.train_cfg = None
    try:
        model = build_detector(cfg.model, test_cfg=cfg.get('test_cfg'))
    except (KeyError, TypeError, ValueError, AssertionError) as error:
        raise UserError(f'config field model: {type(error).__name__}: {error}') from None
    if cfg.get('fp16', None) is not None:
        wrap_fp16_model(model)
    checkpoint = load_checkpoint_checked(model, args.checkpoint, f'the model of {args.config}',
                                         allow_partial=args.allow_partial_checkpoint)
    model = revert_sync_bn_if_single_process(model, distributed, logger)
    if args.fuse_conv_bn:
        model = fuse_conv_bn(model)
    # old checkpoints did not save class info
    model.CLASSES = checkpoint.get('meta', {}).get('CLASSES', dataset.CLASSES)
    apply_inference_precision(model, args.precision, cfg.device)
    compile_backbone(model, args.compile)

    if not distributed:
        model = build_dp(model, cfg.device, device_ids=cfg.gpu_ids)
        outputs = single_gpu_test(model, data_loader, args.show, args.show_dir, args.show_score_thr)
    else:
        model = build_ddp_any_device(model, cfg.device, device_ids=[int(os.environ['LOCAL_RANK'])],
                                     broadcast_buffers=False)
        # Without a tmpdir mmdet collects results through CUDA tensors; on the CPU (and NPU) use a folder.
        if cfg.device in ('cpu', 'npu') and args.tmpdir is None:
            args.tmpdir = osp.join(args.work_dir or '.', '.dist_test_tmp')
        outputs = multi_gpu_test(model, data_loader, args.tmpdir,
                                 args.gpu_collect or cfg.get('evaluation', {}).get('gpu_collect', False))

    rank, _ = get_dist_info()
    if rank == 0:
        if args.out:
            print(f'\nwriting results to {args.out}')
            mmcv.dump(outputs, args.out)
        kwargs = {} if args.eval_options is None else args.eval_options
        if args.format_only:
            dataset.format_results(outputs, **kwargs)
        if args.eval:
            eval_kwargs = cfg.get('evaluation', {}).copy()
            # hard-code way to remove EvalHook args
            for key in ['interval', 'tmpdir', 'start', 'gpu_collect', 'save_best', 'rule', 'dynamic_intervals']:
                eval_kwargs.pop(key, None)
            eval_kwargs.update(dict(metric=args.eval, **kwargs))
            metric = dataset.evaluate(outputs, **eval_kwargs)
            print(metric)
            if json_file is not None:
                mmcv.dump(dict(config=args.config, metric=metric), json_file)
            if args.plot_dir is not None:
                for path in write_eval_plots(dataset, outputs, args.plot_dir, args.eval):
                    print(f'wrote {path}')


if __name__ == '__main__':
    run_cli(main, 'test.py')
