"""CrowdHuman (full-body boxes, one class ``person``) in COCO format, and its evaluation.

The annotation json comes from ``tools/create_crowd_anno.py``: boxes tagged as non-person or ``ignore`` in the
original odgt files become ``iscrowd=1`` (ignore regions). Loading, filtering and the COCO-style metrics are
mmdet's ``CocoDataset``'s (upstream copied that class's code). On top of them, ``evaluate`` computes the three
numbers the CrowdHuman benchmark reports, following the CrowdHuman paper and its official toolkit:

* **AP**: detections of all images sorted by score; each one is matched (Caltech rules, IoU > 0.5) to the
  best-overlapping unmatched non-ignored box of its image; detections that fall onto an ignore region (intersection
  over the detection's area > 0.5) and match nothing else are dropped. AP is the trapezoidal area under the
  precision/recall points (starting from the first detection, as the toolkit does).
* **MR^-2** (``mMR``): log-average miss rate at 9 FPPI values evenly spaced in log space over [1e-2, 1e0]; at each
  reference the miss rate of the first point whose FPPI reaches it is used. Lower is better.
* **JI**: per image, a maximum bipartite matching between detections above a score threshold and non-ignored
  boxes (edges where IoU > 0.5) gives k pairs; unmatched detections / boxes that lie on ignore regions (IoA > 0.5)
  are discounted; the image's Jaccard index is k / (m + n - k). JI is the mean over images (those with m or n > 0)
  at the best of the score thresholds 0.0, 0.1, ..., 0.9.

Upstream's ``evaluate`` returns None; this one returns the metrics as a dict.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from mmcv.utils import print_log
from mmdet.datasets.builder import DATASETS
from mmdet.datasets.coco import CocoDataset
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

MATCH_THR = 0.5
# FPPI references of the MR^-2 metric: 10^-2 .. 10^0 in 9 log-spaced steps (rounded as in the Caltech toolkit).
MR_REFERENCE_FPPI = (0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)
JI_SCORE_THRS = tuple(0.1 * i for i in range(10))
COCO_METRICS = ('bbox', 'proposal', 'proposal_fast')
CROWD_METRICS = ('AP', 'MR', 'JI')


# -- geometry ----------------------------------------------------------------------------------------------------

def _pairwise_overlap(boxes: np.ndarray, others: np.ndarray, mode: str) -> np.ndarray:
    """IoU (``mode='iou'``) or intersection over the area of ``boxes`` (``'ioa'``), boxes as x1, y1, x2, y2."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros((len(boxes), len(others)))
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if mode == 'ioa':
        return inter / np.maximum(area[:, None], 1e-12)
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area[:, None] + other_area[None, :] - inter, 1e-12)


# -- AP and MR^-2 --------------------------------------------------------------------------------------------------

def match_image(dets: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray,
                thr: float = MATCH_THR) -> list[tuple[float, int]]:
    """Caltech-style matching of one image's detections; returns (score, 1 for TP / 0 for FP) per kept detection.

    ``dets``: (n, 5) x1, y1, x2, y2, score. ``gt_boxes``: (m, 4). ``gt_ignore``: (m,) bool. Detections are taken
    in descending score; each claims the unmatched non-ignored box of highest IoU above ``thr``; failing that, a
    detection whose IoA with an ignore region exceeds ``thr`` is dropped (ignore regions can absorb many).
    """
    dets = dets[np.argsort(-dets[:, 4], kind='stable')]
    care = gt_boxes[~gt_ignore]
    ignored = gt_boxes[gt_ignore]
    iou = _pairwise_overlap(dets[:, :4], care, 'iou')
    ioa = _pairwise_overlap(dets[:, :4], ignored, 'ioa')
    taken = np.zeros(len(care), dtype=bool)
    out = []
    for i, det in enumerate(dets):
        candidates = np.where(~taken & (iou[i] > thr))[0]
        if len(candidates):
            taken[candidates[np.argmax(iou[i, candidates])]] = True
            out.append((float(det[4]), 1))
        elif len(ignored) and ioa[i].max() > thr:
            continue  # on an ignore region: neither TP nor FP
        else:
            out.append((float(det[4]), 0))
    return out


def _cumulative_counts(matches: Sequence[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([label for _, label in sorted(matches, key=lambda m: -m[0])], dtype=float)
    return np.cumsum(labels), np.cumsum(1 - labels)


def crowdhuman_ap(matches: Sequence[tuple[float, int]], num_gt: int) -> float:
    """Trapezoidal area under the precision/recall points of the score-sorted ``matches`` (toolkit convention)."""
    if not matches or num_gt == 0:
        return 0.0
    tp, fp = _cumulative_counts(matches)
    recall = tp / num_gt
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def log_average_miss_rate(matches: Sequence[tuple[float, int]], num_gt: int, num_images: int,
                          reference_fppi: Sequence[float] = MR_REFERENCE_FPPI) -> float:
    """MR^-2: geometric mean of the miss rates at the reference FPPI values (see the module docstring)."""
    if not matches or num_gt == 0:
        return 1.0
    tp, fp = _cumulative_counts(matches)
    miss_rate = 1.0 - tp / num_gt
    fppi = fp / num_images
    picked = []
    for ref in reference_fppi:
        reached = np.where(fppi >= ref)[0]
        picked.append(miss_rate[reached[0]] if len(reached) else miss_rate[-1])
    with np.errstate(divide='ignore'):
        return float(np.exp(np.mean(np.log(picked))))


# -- JI ----------------------------------------------------------------------------------------------------------

def image_jaccard(dets: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray, score_thr: float,
                  thr: float = MATCH_THR) -> tuple[float, int, int, int]:
    """One image's Jaccard index at ``score_thr``: returns (k / (m + n - k), k, m, n)."""
    boxes = dets[dets[:, 4] > score_thr, :4]
    care = gt_boxes[~gt_ignore]
    ignored = gt_boxes[gt_ignore]
    iou = _pairwise_overlap(boxes, care, 'iou')
    if iou.size:
        adjacency = csr_matrix(np.where(iou > thr, 1, 0))
        match_of_det = maximum_bipartite_matching(adjacency, perm_type='column')
    else:
        match_of_det = -np.ones(len(boxes), dtype=int)
    det_matched = match_of_det >= 0
    gt_matched = np.zeros(len(care), dtype=bool)
    gt_matched[match_of_det[det_matched]] = True
    k = int(det_matched.sum())

    def on_ignore(candidates: np.ndarray) -> int:
        if len(ignored) == 0 or len(candidates) == 0:
            return 0
        return int((_pairwise_overlap(candidates, ignored, 'ioa').max(axis=1) > thr).sum())

    n = len(boxes) - on_ignore(boxes[~det_matched])
    m = len(care) - on_ignore(care[~gt_matched])
    return k / (m + n - k + 1e-6), k, m, n


def jaccard_index(per_image: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  score_thrs: Sequence[float] = JI_SCORE_THRS) -> float:
    """JI: best over ``score_thrs`` of the mean image Jaccard index (images with no boxes at all are skipped)."""
    best = 0.0
    for score_thr in score_thrs:
        results = [image_jaccard(dets, boxes, ignore, score_thr) for dets, boxes, ignore in per_image]
        counted = sum(1 for _, _, m, n in results if m or n)
        if counted:
            best = max(best, sum(ratio for ratio, *_ in results) / counted)
    return best


# -- dataset -----------------------------------------------------------------------------------------------------

@DATASETS.register_module()
class CrowdHumanDataset(CocoDataset):
    """CrowdHuman in COCO format (``iscrowd=1`` boxes are ignore regions).

    ``evaluate`` metrics: ``'bbox'`` (COCO AP via pycocotools, plus the CrowdHuman ``AP``, ``mMR`` and ``JI``),
    ``'proposal'``, ``'proposal_fast'``, or any of ``'AP'``, ``'MR'``, ``'JI'`` alone.
    """

    CLASSES = ('person',)
    PALETTE = [(220, 20, 60)]
    EVAL_METRICS = COCO_METRICS + CROWD_METRICS   # what evaluate() accepts (test.py checks --eval against it)

    def crowdhuman_inputs(self, results: Sequence) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(detections (n, 5), boxes (m, 4) x1y1x2y2, ignore flags (m,)) per image, clipped to the image."""
        if len(results) != len(self.data_infos):
            raise ValueError(f'CrowdHumanDataset.evaluate: got {len(results)} results for {len(self.data_infos)} '
                             'images')
        per_image = []
        for info, result in zip(self.data_infos, results):
            if isinstance(result, tuple):  # (bbox results, mask results)
                result = result[0]
            dets = np.asarray(result[0], dtype=np.float64).reshape(-1, 5) if len(result) else np.zeros((0, 5))
            anns = self.coco.load_anns(self.coco.get_ann_ids(img_ids=[info['id']]))
            boxes = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
                              for a in anns], dtype=np.float64).reshape(-1, 4)
            ignore = np.array([bool(a.get('iscrowd', 0) or a.get('ignore', 0)) for a in anns], dtype=bool)
            limits = np.array([info['width'], info['height'], info['width'], info['height']], dtype=np.float64)
            dets = dets.copy()
            dets[:, :4] = np.clip(dets[:, :4], 0, limits)
            boxes = np.clip(boxes, 0, limits)
            per_image.append((dets, boxes, ignore))
        return per_image

    def evaluate_crowdhuman(self, results: Sequence, metrics: Sequence[str] = CROWD_METRICS,
                            logger=None) -> dict[str, float]:
        """The CrowdHuman benchmark numbers: ``AP`` (higher better), ``mMR`` (lower better), ``JI``."""
        per_image = self.crowdhuman_inputs(results)
        out = OrderedDict()
        if 'AP' in metrics or 'MR' in metrics:
            matches = [m for dets, boxes, ignore in per_image for m in match_image(dets, boxes, ignore)]
            num_gt = int(sum((~ignore).sum() for _, _, ignore in per_image))
            if 'AP' in metrics:
                out['AP'] = crowdhuman_ap(matches, num_gt)
            if 'MR' in metrics:
                out['mMR'] = log_average_miss_rate(matches, num_gt, len(per_image))
        if 'JI' in metrics:
            out['JI'] = jaccard_index(per_image)
        print_log('CrowdHuman: ' + ', '.join(f'{k} {v:.4f}' for k, v in out.items()), logger=logger)
        return out

    def evaluate(self, results, metric='bbox', logger=None, jsonfile_prefix=None, classwise=False,
                 proposal_nums=(100, 300, 1000), iou_thrs=None, metric_items=None) -> dict:
        """COCO metrics for ``bbox`` / ``proposal`` / ``proposal_fast`` plus the CrowdHuman ``AP``/``MR``/``JI``."""
        metrics = list(metric) if isinstance(metric, (list, tuple)) else [metric]
        for name in metrics:
            if name not in COCO_METRICS + CROWD_METRICS:
                raise KeyError(f'CrowdHumanDataset.evaluate: metric {name!r} is not supported (choose from '
                               f'{", ".join(COCO_METRICS + CROWD_METRICS)})')
        eval_results = OrderedDict()
        coco_metrics = [name for name in metrics if name in COCO_METRICS]
        if coco_metrics:
            eval_results.update(super().evaluate(
                results, metric=coco_metrics, logger=logger, jsonfile_prefix=jsonfile_prefix, classwise=classwise,
                proposal_nums=proposal_nums, iou_thrs=iou_thrs, metric_items=metric_items))
        crowd_metrics = [name for name in metrics if name in CROWD_METRICS]
        if 'bbox' in metrics:
            crowd_metrics = list(CROWD_METRICS)
        if crowd_metrics:
            eval_results.update(self.evaluate_crowdhuman(results, crowd_metrics, logger=logger))
        return eval_results
