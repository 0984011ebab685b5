"""A small inference API: build a detector from a config and a checkpoint, run it on images (arrays or paths) and get
plain numpy boxes, scores, labels and masks back; also the input handling of ``image_demo.py`` (one image, a folder,
a glob or a video) and its ``predictions.json`` records.

    from mmdet_custom.apis.inference import load_detector, predict
    model = load_detector('configs/coco/mask_rcnn_internimage_t_fpn_1x_coco.py', 'mask_rcnn_internimage_t.pth')
    for p in predict(model, ['a.jpg', image_bgr_array], batch_size=2, score_thr=0.3):
        p.boxes    # (n, 4) float32, x1 y1 x2 y2 in the input image's pixels
        p.scores   # (n,) float32
        p.labels   # (n,) int64, index into p.class_names
        p.masks    # (n, H, W) bool, or None for box-only detectors

Arrays are BGR ``uint8`` (H, W, 3), as ``cv2.imread`` returns them.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import os.path as osp
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mmcv_custom.cli.errors import UserError

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


@dataclass
class Prediction:
    """The detections of one image, as plain arrays, highest score first."""

    boxes: np.ndarray                 # (n, 4) float32, x1 y1 x2 y2
    scores: np.ndarray                # (n,) float32
    labels: np.ndarray                # (n,) int64
    masks: np.ndarray | None          # (n, H, W) bool, None without a mask head
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)


def load_detector(config, checkpoint: str | None, device: str | None = None, cfg_options: dict | None = None,
                  allow_partial: bool = False, name: str | None = None, precision: str = 'fp32',
                  compile: bool = False):
    """Build the detector of ``config`` (a path or an ``mmcv.Config``) and load ``checkpoint`` through the project's
    checks (a truncated file or a checkpoint of another model is a one-line :class:`UserError`). ``device``: default
    ``cuda:0`` where CUDA is available, else ``cpu``. Class names come from the checkpoint's meta data, else from the
    config's ``classes``, else COCO's (with a warning, as mmdet's ``init_detector``). ``name``: the config as
    error messages name it (default: its path). ``precision``: 'fp32' or 'bf16' (autocast,
    ``mmdet_custom.apis.amp``). ``compile``: ``torch.compile`` the backbone (``mmdet_custom.apis.compile``)."""
    import torch
    from mmdet.apis import init_detector
    from mmdet.core import get_classes

    from mmcv_custom.cli.checks import load_checkpoint_checked, load_config

    from .amp import apply_inference_precision
    from .compile import compile_backbone

    if device is None:
        device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    name = name or (config if isinstance(config, str) else 'the config')
    cfg = load_config(config, cfg_options) if isinstance(config, str) else config
    model = init_detector(cfg, None, device=device)
    apply_inference_precision(model, precision, device)
    compile_backbone(model, compile)
    meta = {}
    if checkpoint is not None:
        meta = load_checkpoint_checked(model, checkpoint, f'the model of {name}', allow_partial).get('meta', {})
    if 'CLASSES' in meta:
        model.CLASSES = meta['CLASSES']
    elif cfg.get('classes'):
        model.CLASSES = tuple(cfg.classes)
    else:  # as init_detector
        warnings.warn("Class names are not saved in the checkpoint's meta data, use COCO classes by default.")
        model.CLASSES = get_classes('coco')
    return model


def to_prediction(result, class_names: Sequence[str], score_thr: float = 0.0) -> Prediction:
    """mmdet's per-class result of one image (``[array(n_c, 5)]`` or ``(bbox, segm)``) -> :class:`Prediction`."""
    bbox_result, segm_result = result if isinstance(result, tuple) else (result, None)
    if isinstance(segm_result, tuple):  # (segm, scores) of some heads
        segm_result = segm_result[0]
    dets = np.concatenate([np.asarray(r, np.float32).reshape(-1, 5) for r in bbox_result])
    labels = np.concatenate([np.full(len(r), i, np.int64) for i, r in enumerate(bbox_result)])
    masks = None
    if segm_result is not None:
        flat = [np.asarray(m, bool) for per_class in segm_result for m in per_class]
        masks = np.stack(flat) if flat else np.zeros((0, 0, 0), bool)
    keep = np.flatnonzero(dets[:, 4] >= score_thr)
    keep = keep[np.argsort(-dets[keep, 4], kind='stable')]
    return Prediction(boxes=dets[keep, :4], scores=dets[keep, 4], labels=labels[keep],
                      masks=None if masks is None else masks[keep], class_names=tuple(class_names))


def predict(model, inputs, batch_size: int = 1, score_thr: float = 0.0) -> list[Prediction]:
    """Run ``model`` on one input or an iterable of inputs (image paths or BGR arrays), ``batch_size`` at a time."""
    return [prediction for _, _, prediction in predict_iter(model, inputs, batch_size, score_thr)]


def predict_iter(model, inputs, batch_size: int = 1,
                 score_thr: float = 0.0) -> Iterator[tuple[object, object, Prediction]]:
    """(input, mmdet's raw result (for ``model.show_result``), :class:`Prediction`) per input, in order,
    ``batch_size`` images per forward."""
    from mmdet.apis import inference_detector

    if batch_size < 1:
        raise UserError(f'--batch-size {batch_size}: must be a positive integer')
    items = iter([inputs] if isinstance(inputs, (str, np.ndarray)) else inputs)  # lazily: video frames
    while chunk := list(itertools.islice(items, batch_size)):
        # mmdet picks the loading step by the first item's type: a mixed chunk of paths and arrays goes one by one
        mixed = len({isinstance(item, np.ndarray) for item in chunk}) > 1
        outputs = [r for item in chunk for r in inference_detector(model, [item])] if mixed else \
            inference_detector(model, chunk)
        for item, result in zip(chunk, outputs):
            yield item, result, to_prediction(result, model.CLASSES, score_thr)


# ------------------------------------------------------------------------------------------- image_demo's inputs
def resolve_inputs(spec: str) -> tuple[str, list[str]]:
    """``('image' | 'images' | 'video', paths)`` for an image file, a folder (images in it and below), a glob
    pattern or a video file (by extension); a :class:`UserError` naming ``spec`` when nothing matches."""
    if osp.isfile(spec):
        return ('video', [spec]) if spec.lower().endswith(VIDEO_EXTS) else ('image', [spec])
    if osp.isdir(spec):
        paths = sorted(osp.join(folder, name) for folder, _, names in os.walk(spec)
                       for name in names if name.lower().endswith(IMAGE_EXTS))
        if not paths:
            raise UserError(f'image folder {spec} has no images ({", ".join(IMAGE_EXTS)})')
        return 'images', paths
    if glob.has_magic(spec):
        paths = sorted(p for p in glob.glob(spec, recursive=True) if osp.isfile(p) and p.lower().endswith(IMAGE_EXTS))
        if not paths:
            raise UserError(f'no image matches {spec}')
        return 'images', paths
    raise UserError(f'image file {spec} does not exist')


def output_names(paths: list[str]) -> list[str]:
    """Output picture names for ``paths``: relative to their common folder, so equal names in two folders stay
    apart."""
    root = osp.commonpath([osp.dirname(osp.abspath(p)) for p in paths])
    return [osp.relpath(osp.abspath(p), root) for p in paths]


def category_ids(cfg, class_names: Sequence[str]) -> list[int]:
    """The annotation-file id of each class (from the config's test annotation file when it can be read, as
    ``CocoDataset`` maps names to ids); else 1, 2, ... in the order of ``classes`` (as ``to_coco.py`` numbers
    them)."""
    ann_file = cfg.get('data', {}).get('test', {}).get('ann_file') if hasattr(cfg, 'get') else None
    if isinstance(ann_file, str) and osp.isfile(ann_file) and ann_file.endswith('.json'):
        try:
            with open(ann_file) as f:
                by_name = {c['name']: int(c['id']) for c in json.load(f).get('categories', [])}
            if all(name in by_name for name in class_names):
                return [by_name[name] for name in class_names]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # not a COCO file: fall back to the class order
    return list(range(1, len(class_names) + 1))


def prediction_records(prediction: Prediction, file: str, ids: Sequence[int], frame: int | None = None) -> list[dict]:
    """One ``predictions.json`` record per detection: file (and frame for videos), bbox [x, y, w, h], score,
    category name and id."""
    records = []
    for (x1, y1, x2, y2), score, label in zip(prediction.boxes.tolist(), prediction.scores.tolist(),
                                              prediction.labels.tolist()):
        record = dict(file=file)
        if frame is not None:
            record['frame'] = frame
        record.update(bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], score=round(score, 5),
                      category_id=int(ids[label]), category_name=str(prediction.class_names[label]))
        records.append(record)
    return records
