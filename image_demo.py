"""Run a detector on one image and save a picture of its detections (boxes, masks, class names, scores).

    python image_demo.py IMG CONFIG CHECKPOINT [--out DIR | --out-file FILE] [--score-thr 0.3] [--device cpu]

As the original: the picture goes to ``<--out>/<image name>`` (default folder ``demo``); ``--out-file`` names the
output file directly. ``--device`` defaults to cuda:0 and falls back to the CPU when CUDA is not available.
"""
from __future__ import annotations

import argparse
import importlib.util
import os.path as osp
import sys
import warnings

import mmcv
import torch
from mmdet.apis import inference_detector, init_detector
from mmdet.core import get_classes

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmdet_custom  # noqa: F401  (stack check, compatibility patches, registrations)
from mmcv_custom.cli import UserError, add_debug_argument, run_cli
from mmdet_custom.apis.cli import PARTIAL_FLAG, check_writable_file, load_checkpoint_checked, load_config

PALETTES = ('coco', 'voc', 'citys', 'random')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in one image and save a picture of the result')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', type=str, default='demo', help='output folder (the picture keeps the image name)')
    parser.add_argument('--out-file', help='output picture file (overrides --out)')
    parser.add_argument('--device', default='cuda:0', help='device used for inference (cpu without CUDA)')
    parser.add_argument('--palette', default='coco', choices=PALETTES, help='color palette used for visualization')
    parser.add_argument('--score-thr', type=float, default=0.3, help='bbox score threshold')
    parser.add_argument('--async-test', action='store_true', help='accepted for compatibility; has no effect')
    parser.add_argument(PARTIAL_FLAG, action='store_true',
                        help='load a checkpoint of another model (only the matching tensors); without it such a '
                             'checkpoint is refused')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def build_model(cfg, checkpoint_path: str, config_path: str, device: str, allow_partial: bool):
    """mmdet's ``init_detector`` with the checkpoint loaded through the project's checks (a truncated file or a
    checkpoint of another model is a one-line error; mmdet would raise a traceback or only warn)."""
    model = init_detector(cfg, None, device=device)
    checkpoint = load_checkpoint_checked(model, checkpoint_path, f'the model of {config_path}', allow_partial)
    if 'CLASSES' in checkpoint.get('meta', {}):
        model.CLASSES = checkpoint['meta']['CLASSES']
    else:  # as init_detector
        warnings.warn("Class names are not saved in the checkpoint's meta data, use COCO classes by default.")
        model.CLASSES = get_classes('coco')
    return model


def main(argv=None) -> str:
    args = parse_args(argv)
    if not osp.isfile(args.img):
        raise UserError(f'image file {args.img} does not exist')
    try:
        image = mmcv.imread(args.img)
    except Exception as error:  # noqa: BLE001  (cv2 / turbojpeg / pillow fail differently)
        raise UserError(f'image file {args.img} cannot be read or decoded ({type(error).__name__}: {error})') from None
    if image is None:
        raise UserError(f'image file {args.img} cannot be read or decoded (not an image format OpenCV knows)')
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        print(f'[image_demo] CUDA is not available: running on the CPU instead of {device}', file=sys.stderr)
        device = 'cpu'
    out_file = args.out_file or osp.join(args.out, osp.basename(args.img))
    check_writable_file(out_file, '--out-file' if args.out_file else '--out')
    cfg = load_config(args.config)
    model = build_model(cfg, args.checkpoint, args.config, device, args.allow_partial_checkpoint)
    result = inference_detector(model, args.img)
    model.show_result(args.img, result, score_thr=args.score_thr, show=False, bbox_color=args.palette,
                      text_color=(200, 200, 200), mask_color=args.palette, out_file=out_file)
    bboxes = result[0] if isinstance(result, tuple) else result
    kept = sum(int((class_boxes[:, -1] >= args.score_thr).sum()) for class_boxes in bboxes)
    print(f'[image_demo] {kept} detections with score >= {args.score_thr} drawn to {out_file}')
    return out_file


if __name__ == '__main__':
    run_cli(main, 'image_demo.py')
