"""Training steps and inference of whole detectors (Mask R-CNN InternImage-T, DINO InternImage-T) at 800x1333, batch 2,
in float32 and mixed precision, each precision against float32 measured in the same run (tools/gpu_check.sh --full).

Each step is the user's own path through mmcv/mmdet: ``model.train_step`` (forward, losses), then the optimizer hook
the config's precision selects - mmcv's ``OptimizerHook`` (fp32), ``Fp16OptimizerHook`` with a dynamic loss scale
(``--amp fp16``, what ``fp16 = dict(loss_scale='dynamic')`` builds; CUDA only) or ``OptimizerHook`` on a model whose
forward runs under bf16 autocast (``--amp bf16``, mmdet_custom.apis.amp) - with the config's optimizer (AdamW through
the layer-decay constructor). Inference is ``model(return_loss=False, rescale=True)`` on one image at a time.

Figures per detector and precision: train images/s and inference images/s (median of the timed repeats after
warm-up), peak memory (torch.cuda.max_memory_allocated during the train steps / inference, MiB; GPU only), the
losses of the last step (finite), and the speed ratio against float32. One summary line each, JSON lines to --results.

usage: python tools/benchmarks/bench_detector_steps.py [--results FILE] [--steps 6] [--warmup 2] [--smoke]
  --smoke  small images (256x416) and few steps, on the CPU when no GPU is visible: checks the path, not a figure.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
import types
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

DETECTORS = {
    'mask_rcnn_internimage_t': 'configs/coco/mask_rcnn_internimage_t_fpn_1x_coco.py',
    'dino_internimage_t': 'configs/coco/dino_4scale_internimage_t_1x_coco_layer_wise_lr.py',
}


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def build(config: str, device: torch.device, precision: str):
    """The detector and its optimizer hook, from the config as train.py builds them (no pretrained download)."""
    from mmcv.runner import Fp16OptimizerHook, LogBuffer, OptimizerHook, build_optimizer
    from mmdet.models import build_detector
    from mmdet.utils import get_root_logger

    import mmcv_custom  # noqa: F401  (registers the optimizer constructor, the compat patches)
    import mmdet_custom  # noqa: F401  (registers the backbones, heads, detectors)
    from mmcv_custom.cli.checks import load_config
    from mmdet_custom.apis.amp import apply_mixed_precision

    get_root_logger(log_level=logging.WARNING)  # the optimizer constructor's parameter-group dump is not a figure
    cfg = load_config(os.path.join(ROOT, config))
    cfg.model.backbone.init_cfg = None  # random weights: no download on an offline GPU machine
    cfg.model.pop('pretrained', None)
    if precision != 'fp32':
        cfg.amp = dict(dtype=precision)
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()
    model.to(device)
    apply_mixed_precision(cfg, model, str(device))
    optimizer = build_optimizer(model, cfg.optimizer)
    runner = types.SimpleNamespace(model=model, optimizer=optimizer, outputs={}, meta={}, log_buffer=LogBuffer())
    if precision == 'fp16':
        hook = Fp16OptimizerHook(loss_scale='dynamic', grad_clip=cfg.optimizer_config.get('grad_clip'))
        hook.before_run(runner)  # wraps the model for fp16 (mmcv's wrap_fp16_model) and makes the loss scaler
    else:
        hook = OptimizerHook(grad_clip=cfg.optimizer_config.get('grad_clip'))
    return model, runner, hook


def synthetic_batch(batch: int, height: int, width: int, device: torch.device, with_masks: bool) -> dict:
    """What mmdet's pipeline hands a detector for ``batch`` images of height x width padded to a multiple of 32."""
    from mmdet.core import BitmapMasks

    pad_h, pad_w = math.ceil(height / 32) * 32, math.ceil(width / 32) * 32
    generator = torch.Generator().manual_seed(height * width)
    img = torch.randn(batch, 3, pad_h, pad_w, generator=generator)
    metas, boxes, labels, masks = [], [], [], []
    for _ in range(batch):
        metas.append(dict(img_shape=(height, width, 3), ori_shape=(height, width, 3), pad_shape=(pad_h, pad_w, 3),
                          batch_input_shape=(pad_h, pad_w), scale_factor=np.ones(4, dtype=np.float32), flip=False,
                          flip_direction=None, filename='synthetic.jpg', ori_filename='synthetic.jpg',
                          img_norm_cfg=dict(mean=np.zeros(3), std=np.ones(3), to_rgb=False)))
        n = 8
        xy = torch.rand(n, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
        wh = (torch.rand(n, 2, generator=generator) * 0.25 + 0.05) * torch.tensor([width, height])
        box = torch.cat([xy, xy + wh], dim=1)
        boxes.append(box.to(device))
        labels.append(torch.randint(0, 80, (n,), generator=generator).to(device))
        if with_masks:
            m = np.zeros((n, pad_h, pad_w), dtype=np.uint8)
            for i, (x1, y1, x2, y2) in enumerate(box.round().long().tolist()):
                m[i, y1:y2, x1:x2] = 1
            masks.append(BitmapMasks(m, pad_h, pad_w))
    data = dict(img=img.to(device), img_metas=metas, gt_bboxes=boxes, gt_labels=labels)
    if with_masks:
        data['gt_masks'] = masks
    return data


def train_step(model, runner, hook, data: dict) -> dict:
    runner.outputs = model.train_step(data, runner.optimizer)
    hook.after_train_iter(runner)  # zero_grad, (scaled) backward, (unscale, clip,) step, scaler update
    return runner.outputs['log_vars']


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda' else None


def bench_one(name: str, precision: str, args, device: torch.device, size: tuple[int, int]) -> dict:
    model, runner, hook = build(DETECTORS[name], device, precision)
    data = synthetic_batch(args.batch, *size, device, with_masks='mask_rcnn' in name)
    model.train()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    log_vars: dict = {}
    for _ in range(args.warmup):
        log_vars = train_step(model, runner, hook, data)
    train_times = []
    for _ in range(args.steps):
        train_times.append(timed(lambda: log_vars.update(train_step(model, runner, hook, data)), device))
    train_peak = peak_mib(device)
    losses = {k: float(v) for k, v in log_vars.items() if 'loss' in k}
    model.eval()
    image = data['img'][:1]
    metas = [data['img_metas'][0]]
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    def infer() -> None:
        with torch.no_grad():
            model(return_loss=False, rescale=True, img=[image], img_metas=[metas])
    for _ in range(args.warmup):
        infer()
    infer_times = [timed(infer, device) for _ in range(args.steps)]
    record = dict(bench='detector', detector=name, precision=precision, device=str(device),
                  size=f'{size[0]}x{size[1]}', batch=args.batch,
                  train_images_per_s=args.batch / statistics.median(train_times),
                  infer_images_per_s=1 / statistics.median(infer_times),
                  train_peak_mib=train_peak, infer_peak_mib=peak_mib(device), losses=losses,
                  finite=all(math.isfinite(v) for v in losses.values()))
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--results', help='append the figures as JSON lines to this file')
    parser.add_argument('--detectors', nargs='*', default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument('--precisions', nargs='*', default=None, choices=['fp32', 'fp16', 'bf16'],
                        help='default: fp32 fp16 bf16 on a GPU, fp32 bf16 on the CPU (fp16 is CUDA-only)')
    parser.add_argument('--steps', type=int, default=6, help='timed train steps and inference repeats')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--smoke', action='store_true', help='256x416 images, 1 timed step; the CPU without a GPU')
    args = parser.parse_args()
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cpu' and not args.smoke:
        parser.error('no CUDA device visible: full-size detector steps need a GPU (use --smoke to check the path)')
    size = (256, 416) if args.smoke else (800, 1333)
    if args.smoke:
        args.steps, args.warmup = 1, 1
    precisions = args.precisions or (['fp32', 'fp16', 'bf16'] if device.type == 'cuda' else ['fp32', 'bf16'])
    if device.type == 'cpu' and 'fp16' in precisions:
        parser.error('fp16 mixed precision is CUDA-only (mmcv builds it on torch.cuda.amp); use bf16 on the CPU')
    warnings.filterwarnings('ignore')
    failed = False
    for name in args.detectors:
        baseline = None
        for precision in precisions:
            try:
                record = bench_one(name, precision, args, device, size)
                if device.type == 'cuda':
                    torch.cuda.empty_cache()  # the previous model's blocks: each precision starts from the same pool
            except Exception as error:  # one failing precision must not hide the others' figures
                print(f'detector {name} {precision}: FAILED: {type(error).__name__}: {error}', flush=True)
                failed = True
                continue
            if precision == 'fp32':
                baseline = record
            if baseline is not None:
                record['train_vs_fp32'] = record['train_images_per_s'] / baseline['train_images_per_s']
                record['infer_vs_fp32'] = record['infer_images_per_s'] / baseline['infer_images_per_s']
            failed |= not record['finite']
            mem = (f" | peak {record['train_peak_mib']:.0f} / {record['infer_peak_mib']:.0f} MiB"
                   if record['train_peak_mib'] is not None else '')
            ratio = (f" | x{record['train_vs_fp32']:.2f} / x{record['infer_vs_fp32']:.2f} vs fp32"
                     if 'train_vs_fp32' in record else '')
            print(f"detector {name} {precision} {record['size']} batch {args.batch} on {device}: train "
                  f"{record['train_images_per_s']:.2f} img/s, inference {record['infer_images_per_s']:.2f} img/s"
                  f"{ratio}{mem} | loss {record['losses'].get('loss', float('nan')):.3f}"
                  f"{'' if record['finite'] else ' NOT FINITE'}", flush=True)
            if args.results:
                with open(args.results, 'a') as f:
                    f.write(json.dumps(record) + '\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
