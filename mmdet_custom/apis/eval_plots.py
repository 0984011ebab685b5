"""Per-class AP and precision-recall pictures of a COCO-style evaluation (``test.py --plot-dir DIR``).

They come from COCOeval's accumulated ``precision`` array, shape ``(T, R, K, A, M)``: T = 10 IoU thresholds
0.50:0.05:0.95, R = 101 recall thresholds 0:0.01:1, K categories, A = 4 area ranges (all, small, medium, large),
M max-detection settings. Entries are the interpolated precision at that recall (0 beyond the recall reached);
-1 marks a category without ground truth. The evaluation is set up as mmdet's ``CocoDataset.evaluate`` does it
(its category and image ids, ``maxDets = (100, 300, 1000)``), so the mean of the per-class APs is mmdet's
``bbox_mAP`` / ``segm_mAP``.

Written per evaluated kind (``bbox``, ``segm``): ``per_class_ap_<kind>.png`` (AP at IoU 0.50:0.95 per class, a
horizontal bar chart), ``precision_recall_<kind>.png`` (each class's curve at IoU 0.50 and the class mean at 0.50
and 0.75) and ``per_class_ap_<kind>.json`` (the numbers).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import os.path as osp
import tempfile
from collections.abc import Sequence

import numpy as np

MAX_DETS = (100, 300, 1000)       # mmdet's proposal_nums: its mAP is read at 1000 detections
PLOTTED_KINDS = ('bbox', 'segm')
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def coco_precision(coco_gt, detections: list[dict] | str, iou_type: str, cat_ids: Sequence[int] | None = None,
                   img_ids: Sequence[int] | None = None, max_dets: Sequence[int] = MAX_DETS) -> np.ndarray:
    """COCOeval's accumulated ``precision`` (T, R, K, A, M) of ``detections`` (COCO result dicts or a result json)
    against ``coco_gt`` (a pycocotools ``COCO``). COCOeval's progress printing is silenced."""
    from mmdet.datasets.api_wrappers import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.catIds = list(cat_ids if cat_ids is not None else coco_gt.getCatIds())
        evaluator.params.imgIds = list(img_ids if img_ids is not None else coco_gt.getImgIds())
        evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval['precision']


def per_class_ap(precision: np.ndarray, area_index: int = 0, max_dets_index: int = -1) -> np.ndarray:
    """AP at IoU 0.50:0.95 of each category (NaN without ground truth), as mmdet's ``classwise`` table."""
    aps = []
    for k in range(precision.shape[2]):
        values = precision[:, :, k, area_index, max_dets_index]
        values = values[values > -1]
        aps.append(float(np.mean(values)) if values.size else float('nan'))
    return np.array(aps)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_per_class_ap(names: Sequence[str], aps: np.ndarray, out_file: str, title: str = 'per-class AP') -> str:
    figure = _figure(7, max(2.5, 0.3 * len(names) + 1.2))
    axes = figure.subplots(1, 1)
    order = list(range(len(names)))[::-1]   # the first class on top
    values = [0.0 if np.isnan(aps[i]) else aps[i] for i in order]
    axes.barh([names[i] for i in order], values, color='tab:blue')
    for y, i in enumerate(order):
        axes.text(values[y] + 0.01, y, 'n/a' if np.isnan(aps[i]) else f'{aps[i]:.3f}', va='center', fontsize=8)
    mean = np.nanmean(aps) if np.isfinite(aps).any() else float('nan')
    axes.set_xlim(0, 1.1)
    axes.set_xlabel('AP (IoU 0.50:0.95)')
    axes.set_title(f'{title} (mean {mean:.3f})')
    axes.grid(axis='x', alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_file)
    return out_file


def _mean_curve(precision: np.ndarray, iou_index: int) -> np.ndarray:
    curves = precision[iou_index, :, :, 0, -1]   # (R, K)
    valid = curves[:, (curves > -1).all(axis=0)]
    return valid.mean(axis=1) if valid.size else np.zeros(curves.shape[0])


def plot_precision_recall(precision: np.ndarray, names: Sequence[str], out_file: str,
                          title: str = 'precision-recall') -> str:
    figure = _figure(7, 5)
    axes = figure.subplots(1, 1)
    for k, name in enumerate(names):
        curve = precision[0, :, k, 0, -1]
        if (curve > -1).all():
            axes.plot(RECALL_THRESHOLDS, curve, linewidth=1, alpha=0.7, label=name)
    axes.plot(RECALL_THRESHOLDS, _mean_curve(precision, 0), color='black', linewidth=2.2, label='mean, IoU 0.50')
    iou_75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    axes.plot(RECALL_THRESHOLDS, _mean_curve(precision, iou_75), color='black', linewidth=1.5, linestyle='--',
              label='mean, IoU 0.75')
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel('recall')
    axes.set_ylabel('precision')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc='lower left', ncol=2)
    figure.tight_layout()
    figure.savefig(out_file)
    return out_file


def write_eval_plots(dataset, outputs: list, out_dir: str, metrics: Sequence[str]) -> list[str]:
    """The per-class AP and precision-recall pictures (and the per-class numbers as json) of ``outputs`` on a
    COCO-style ``dataset`` for each of ``metrics`` that is ``bbox`` or ``segm``. Returns the files written."""
    os.makedirs(out_dir, exist_ok=True)
    names = [str(name) for name in dataset.CLASSES]
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        result_files = dataset.results2json(outputs, osp.join(tmp, 'results'))
        for kind in (m for m in PLOTTED_KINDS if m in metrics and m in result_files):
            with open(result_files[kind]) as f:
                detections = json.load(f)
            if not detections:   # pycocotools cannot load an empty result list
                continue
            precision = coco_precision(dataset.coco, detections, kind, dataset.cat_ids, dataset.img_ids)
            aps = per_class_ap(precision)
            numbers = osp.join(out_dir, f'per_class_ap_{kind}.json')
            with open(numbers, 'w') as f:
                json.dump({name: (None if np.isnan(ap) else round(float(ap), 4)) for name, ap in zip(names, aps)},
                          f, indent=1)
            written += [plot_per_class_ap(names, aps, osp.join(out_dir, f'per_class_ap_{kind}.png'),
                                          title=f'{kind}: per-class AP'),
                        plot_precision_recall(precision, names, osp.join(out_dir, f'precision_recall_{kind}.png'),
                                              title=f'{kind}: precision-recall'),
                        numbers]
    return written
