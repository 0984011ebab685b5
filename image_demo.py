"""Run a detector on one image and save a picture of its detections (boxes, masks, class names, scores).

    python image_demo.py IMG CONFIG CHECKPOINT [--out DIR | --out-file FILE] [--score-thr 0.3] [--device cpu]

As the original: the picture goes to ``<--out>/<image name>`` (default folder ``demo``); ``--out-file`` names the
output file directly. ``--device`` defaults to cuda:0 and falls back to the CPU when CUDA is not available.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import mmcv
import torch
from mmdet.apis import inference_detector, init_detector

import mmcv_custom  # noqa: F401  (stack check, compatibility patches, registrations)
import mmdet_custom  # noqa: F401  (registers the InternImage models)
from tools.entry_utils import UserError, load_config, run_cli

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
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    if not osp.isfile(args.img):
        raise UserError(f'image file {args.img} does not exist')
    if mmcv.imread(args.img) is None:
        raise UserError(f'image file {args.img} cannot be read or decoded')
    if not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint file {args.checkpoint} does not exist')
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        print(f'[image_demo] CUDA is not available: running on the CPU instead of {device}', file=sys.stderr)
        device = 'cpu'
    cfg = load_config(args.config)
    model = init_detector(cfg, args.checkpoint, device=device)
    result = inference_detector(model, args.img)
    out_file = args.out_file or osp.join(args.out, osp.basename(args.img))
    mmcv.mkdir_or_exist(osp.dirname(osp.abspath(out_file)))
    model.show_result(args.img, result, score_thr=args.score_thr, show=False, bbox_color=args.palette,
                      text_color=(200, 200, 200), mask_color=args.palette, out_file=out_file)
    bboxes = result[0] if isinstance(result, tuple) else result
    kept = sum(int((class_boxes[:, -1] >= args.score_thr).sum()) for class_boxes in bboxes)
    print(f'[image_demo] {kept} detections with score >= {args.score_thr} drawn to {out_file}')
    return out_file


if __name__ == '__main__':
    run_cli(main, 'image_demo.py')
