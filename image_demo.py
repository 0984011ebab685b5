"""Run a detector on an image, a folder of images, a glob or a video, and save pictures of its detections (boxes,
masks, class names, scores).

    python image_demo.py IMG CONFIG CHECKPOINT [--out DIR | --out-file FILE] [--score-thr 0.3] [--device cpu]
    python image_demo.py FOLDER|'GLOB'|VIDEO CONFIG CHECKPOINT --out-dir DIR [--batch-size 4]

One image, as the original: the picture goes to ``<--out>/<image name>`` (default folder ``demo``); ``--out-file``
names the output file directly. A folder (images in it and below) or a glob: one picture per image under
``--out-dir`` (default ``--out``), named by its path relative to the images' common folder. A video (.mp4, .avi,
.mov, .mkv, ...): ``<--out-dir>/<video name>.mp4`` with the detections drawn on every frame. With several images, a
video or ``--out-dir``, ``<--out-dir>/predictions.json`` gets one record per detection (score >= ``--score-thr``):
file (and frame), bbox [x, y, w, h], score, category name and id. ``--device`` defaults to cuda:0 and falls back to
the CPU when CUDA is not available. The same in Python: ``mmdet_custom.apis.inference``.
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import os.path as osp
import sys
from collections.abc import Iterator

import mmcv
import torch
from mmdet.apis import inference_detector

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmdet_custom  # noqa: F401  (stack check, compatibility patches, registrations)
from mmcv_custom.cli.checks import (
    PARTIAL_FLAG,
    check_device,
    check_image_output,
    check_image_size,
    check_writable_dir,
    check_writable_file,
    load_config,
)
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli
from mmdet_custom.apis.amp import add_precision_argument
from mmdet_custom.apis.compile import add_compile_argument
from mmdet_custom.apis.inference import (
    category_ids,
    load_detector,
    output_names,
    predict_iter,
    prediction_records,
    resolve_inputs,
    to_prediction,
)

PALETTES = ('coco', 'voc', 'citys', 'random')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in one image and save a picture of the result')
    parser.add_argument('img', help='image file, folder of images, glob pattern (quoted) or video file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', type=str, default='demo', help='output folder (the picture keeps the image name)')
    parser.add_argument('--out-file', help='output picture file (overrides --out; one image only)')
    parser.add_argument('--out-dir', help='output folder for a folder, glob or video: pictures (or the annotated '
                                          'video) and predictions.json (default: --out)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (folders, globs, videos)')
    parser.add_argument('--device', default='cuda:0', help='device used for inference (cpu without CUDA)')
    parser.add_argument('--palette', default='coco', choices=PALETTES, help='color palette used for visualization')
    parser.add_argument('--score-thr', type=float, default=0.3, help='bbox score threshold')
    parser.add_argument('--async-test', action='store_true',
                        help='refused: mmdet 2.x\'s asynchronous inference is not supported here (use --batch-size)')
    parser.add_argument(PARTIAL_FLAG, action='store_true',
                        help='load a checkpoint of another model (only the matching tensors); without it such a '
                             'checkpoint is refused')
    add_precision_argument(parser)
    add_compile_argument(parser)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.async_test:  # the original accepted it and ran synchronously anyway
        raise UserError('--async-test: not supported (mmdet 2.x\'s asynchronous inference needs CUDA streams and '
                        'an async_simple_test, which DINO lacks); leave it out, --batch-size N batches the images')
    return args


def read_image(path: str):
    try:
        image = mmcv.imread(path)
    except Exception as error:  # noqa: BLE001  (cv2 / turbojpeg / pillow fail differently)
        raise UserError(f'image file {path} cannot be read or decoded ({type(error).__name__}: {error})') from None
    if image is None:
        raise UserError(f'image file {path} cannot be read or decoded (not an image format OpenCV knows)')
    return image


def draw(model, image, result, args, out_file: str | None = None):
    """The picture of ``result`` on ``image`` (written to ``out_file`` when given)."""
    return model.show_result(image, result, score_thr=args.score_thr, show=False, bbox_color=args.palette,
                             text_color=(200, 200, 200), mask_color=args.palette, out_file=out_file)


def readable_images(paths: list[str], skipped: list[str]) -> Iterator[tuple[str, object]]:
    """(path, image) of every image that decodes; the others are named on stderr and left out (one bad file in a
    folder of thousands should not end the run)."""
    for path in paths:
        try:
            yield path, read_image(path)
        except UserError as error:
            print(f'\n[image_demo] skipped: {error}', file=sys.stderr)
            skipped.append(path)


def run_images(model, paths: list[str], out_dir: str, args, ids: list[int]) -> list[dict]:
    """One picture per image under ``out_dir`` and the images' prediction records."""
    records, skipped = [], []
    names = dict(zip(paths, output_names(paths)))
    progress = mmcv.ProgressBar(len(paths))
    images = readable_images(paths, skipped)
    while chunk := list(itertools.islice(images, args.batch_size)):
        outputs = predict_iter(model, [image for _, image in chunk], args.batch_size, args.score_thr)
        for (path, image), (_, result, prediction) in zip(chunk, outputs):
            draw(model, image, result, args, osp.join(out_dir, names[path]))
            records += prediction_records(prediction, path, ids)
            progress.update()
    if len(skipped) == len(paths):
        raise UserError(f'none of the {len(paths)} images of {args.img} can be read or decoded')
    return records


def video_frames(capture) -> Iterator:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def run_video(model, path: str, out_dir: str, args, ids: list[int]) -> tuple[list[dict], str]:
    """The video with the detections drawn on every frame (``<out_dir>/<name>.mp4``) and the frames' records."""
    import cv2

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise UserError(f'video file {path} cannot be opened (not a video format OpenCV can read)')
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    out_file = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.mp4')
    writer = cv2.VideoWriter(out_file, cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    progress = mmcv.ProgressBar(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1)
    records = []
    try:
        predictions = predict_iter(model, video_frames(capture), args.batch_size, args.score_thr)
        for index, (frame, result, prediction) in enumerate(predictions):
            writer.write(draw(model, frame, result, args))
            records += prediction_records(prediction, path, ids, frame=index)
            progress.update()
    finally:
        capture.release()
        writer.release()
    return records, out_file


def main(argv=None) -> str:
    args = parse_args(argv)
    kind, paths = resolve_inputs(args.img)
    if args.batch_size < 1:
        raise UserError(f'--batch-size {args.batch_size}: must be a positive integer')
    if kind != 'image' and args.out_file:
        what = 'a video' if kind == 'video' else 'several images'
        raise UserError(f'--out-file names one picture and {args.img} is {what}: use --out-dir')
    image = read_image(args.img) if kind == 'image' else None
    check_device(args.device)
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        print(f'[image_demo] CUDA is not available: running on the CPU instead of {device}', file=sys.stderr)
        device = 'cpu'
    out_dir = args.out_dir or args.out
    if kind == 'image' and not args.out_dir:  # the original's single-image form
        out_file = args.out_file or osp.join(args.out, osp.basename(args.img))
        check_image_output(out_file, '--out-file' if args.out_file else 'IMG')
        check_writable_file(out_file, '--out-file' if args.out_file else '--out')
    else:
        check_writable_dir(out_dir, '--out-dir' if args.out_dir else '--out')
    cfg = load_config(args.config, required=('model',))
    if image is not None:
        pipeline = cfg.get('data', {}).get('test', {}).get('pipeline')
        check_image_size(*image.shape[:2], pipeline, f'image file {args.img}')
    model = load_detector(cfg, args.checkpoint, device, allow_partial=args.allow_partial_checkpoint,
                          name=args.config, precision=args.precision, compile=args.compile)
    if kind == 'image' and not args.out_dir:
        result = inference_detector(model, args.img)
        draw(model, args.img, result, args, out_file)
        kept = len(to_prediction(result, model.CLASSES, args.score_thr))
        print(f'[image_demo] {kept} detections with score >= {args.score_thr} drawn to {out_file}')
        return out_file
    ids = category_ids(cfg, model.CLASSES)
    if kind == 'video':
        records, drawn = run_video(model, paths[0], out_dir, args, ids)
    else:
        records, drawn = run_images(model, paths, out_dir, args, ids), out_dir
    json_file = osp.join(out_dir, 'predictions.json')
    mmcv.dump(records, json_file)
    print(f'\n[image_demo] {len(records)} detections with score >= {args.score_thr} in {len(paths)} '
          f'{"video" if kind == "video" else "image(s)"}: pictures in {drawn}, records in {json_file}')
    return json_file


if __name__ == '__main__':
    run_cli(main, 'image_demo.py')
