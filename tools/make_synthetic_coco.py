"""Generate the synthetic COCO-format "shapes" dataset used by `make demo`, the demo configs and the tests.

Each image shows a few filled shapes (circle, square, triangle, star) of random colour, size and rotation on a
textured background (smooth colour noise plus stripes or a checkerboard, with pixel noise over everything).
Every object is annotated with a box and a polygon mask; shapes never overlap, so each polygon is exactly the
visible object. The class is given by the shape only (colours are random), and train and val are drawn from
the same distribution with independent random streams derived from one seed.

    python tools/make_synthetic_coco.py --out data/demo_shapes --num-train 600 --num-val 100 --size 128

writes ``OUT/{train,val}/*.jpg`` (or .png) and ``OUT/annotations/instances_{train,val}.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import os.path as osp
import sys

import cv2
import numpy as np

if importlib.util.find_spec('mmcv_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmcv_custom.cli.errors import UserError, run_cli

CLASSES = ('circle', 'square', 'triangle', 'star')


# ----------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------

def _shape_polygon(kind: str, center: tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """(P, 2) float polygon (x, y) of a shape with circumradius ``radius``, rotated by ``angle`` radians."""
    if kind == 'circle':
        count, radii = 32, [radius]
    elif kind == 'square':
        count, radii = 4, [radius]
    elif kind == 'triangle':
        count, radii = 3, [radius]
    elif kind == 'star':
        count, radii = 10, [radius, radius * 0.45]  # alternate outer and inner vertices
    else:
        raise ValueError(f'unknown shape {kind!r}')
    points = []
    for i in range(count):
        theta = angle + 2 * math.pi * i / count
        r = radii[i % len(radii)]
        points.append((center[0] + r * math.cos(theta), center[1] + r * math.sin(theta)))
    return np.asarray(points, dtype=np.float64)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size, 3) float image in [0, 1]: random colours on a coarse grid, bicubically upsampled."""
    grid = rng.random((cells, cells, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background: smooth colour noise, blended with stripes or a checkerboard of a second colour."""
    base = _smooth_noise(rng, size, int(rng.integers(2, 6)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pattern_kind = rng.integers(0, 3)
    period = float(rng.uniform(6, 20))
    if pattern_kind == 0:  # stripes at a random angle
        theta = rng.uniform(0, math.pi)
        pattern = (np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period) > 0)
    elif pattern_kind == 1:  # checkerboard
        pattern = ((xx // period + yy // period) % 2) == 0
    else:  # blobs
        pattern = _smooth_noise(rng, size, int(rng.integers(4, 10)))[..., 0] > 0.5
    second = rng.random(3).astype(np.float32)
    strength = float(rng.uniform(0.15, 0.5))
    image = base * (1 - strength) + strength * np.where(pattern[..., None], second, base)
    return image


def _colour_far_from(rng: np.random.Generator, reference: np.ndarray, min_distance: float = 0.35) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` (Euclidean, [0, 1] units) from ``reference``."""
    colour = rng.random(3)
    for _ in range(50):
        if np.linalg.norm(colour - reference) >= min_distance:
            break
        colour = rng.random(3)
    return colour.astype(np.float32)


def _boxes_overlap(box: tuple[float, float, float, float], others: list, margin: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < o[2] + margin and o[0] < x1 + margin and y0 < o[3] + margin and o[1] < y1 + margin
               for o in others)


def render_image(rng: np.random.Generator, size: int, max_objects: int, min_radius_frac: float,
                 max_radius_frac: float) -> tuple[np.ndarray, list[dict]]:
    """One image (uint8 BGR) and its objects: dicts with ``category`` (index), ``polygon`` (P, 2)."""
    image = _background(rng, size)
    objects: list[dict] = []
    boxes: list[tuple[float, float, float, float]] = []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(wanted * 20):  # rejection sampling of non-overlapping placements
        if len(objects) == wanted:
            break
        category = int(rng.integers(0, len(CLASSES)))
        radius = float(rng.uniform(min_radius_frac, max_radius_frac) * size)
        center = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
        polygon = _shape_polygon(CLASSES[category], center, radius, float(rng.uniform(0, 2 * math.pi)))
        x0, y0 = polygon.min(axis=0)
        x1, y1 = polygon.max(axis=0)
        if x0 < 1 or y0 < 1 or x1 > size - 2 or y1 > size - 2:  # keep whole objects inside the image
            continue
        if _boxes_overlap((x0, y0, x1, y1), boxes):
            continue
        boxes.append((x0, y0, x1, y1))
        objects.append(dict(category=category, polygon=polygon))

    for obj in objects:
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(obj['polygon'] * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        region = mask.astype(bool)
        colour = _colour_far_from(rng, image[region].mean(axis=0) if region.any() else image.mean(axis=(0, 1)))
        # a mild shading gradient makes objects less flat than a single colour
        shade = 0.85 + 0.3 * _smooth_noise(rng, size, 2)[..., :1]
        image[region] = np.clip(colour * shade[region], 0, 1)
    image = image + rng.normal(0, 0.03, image.shape).astype(np.float32)
    bgr = (np.clip(image, 0, 1)[..., ::-1] * 255).round().astype(np.uint8)
    return bgr, objects


# ----------------------------------------------------------------------------------------------------------
# COCO writing
# ----------------------------------------------------------------------------------------------------------

def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def make_split(out_dir: str, split: str, num_images: int, size: int, rng: np.random.Generator,
               max_objects: int = 3, min_radius_frac: float = 0.12, max_radius_frac: float = 0.3,
               image_ext: str = 'jpg') -> str:
    """Render ``num_images`` images into ``out_dir/split`` and write ``annotations/instances_<split>.json``."""
    image_dir = osp.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        bgr, objects = render_image(rng, size, max_objects, min_radius_frac, max_radius_frac)
        file_name = f'{split}_{image_id:05d}.{image_ext}'
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_ext == 'jpg' else []
        if not cv2.imwrite(osp.join(image_dir, file_name), bgr, params):
            raise UserError(f'--out {out_dir}: could not write {osp.join(image_dir, file_name)}')
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for obj in objects:
            polygon = obj['polygon']
            x0, y0 = polygon.min(axis=0)
            x1, y1 = polygon.max(axis=0)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=obj['category'] + 1,
                bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                area=round(_polygon_area(polygon), 2),
                segmentation=[[round(float(v), 2) for v in polygon.reshape(-1)]],
                iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)]
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file + '.tmp', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    os.replace(ann_file + '.tmp', ann_file)  # a crash never leaves a half-written annotation file
    return ann_file


def split_rngs(seed: int, count: int) -> list[np.random.Generator]:
    """Independent random streams for the splits, all derived from one seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Generate the synthetic COCO-format shapes dataset')
    parser.add_argument('--out', default='data/demo_shapes', help='output folder')
    parser.add_argument('--num-train', type=int, default=600, help='number of training images')
    parser.add_argument('--num-val', type=int, default=100, help='number of validation images')
    parser.add_argument('--size', type=int, default=128, help='image side in pixels')
    parser.add_argument('--max-objects', type=int, default=3, help='at most this many objects per image')
    parser.add_argument('--min-radius', type=float, default=0.12, help='smallest circumradius, fraction of size')
    parser.add_argument('--max-radius', type=float, default=0.3, help='largest circumradius, fraction of size')
    parser.add_argument('--ext', choices=['jpg', 'png'], default='jpg', help='image file format')
    parser.add_argument('--seed', type=int, default=0, help='random seed (train and val get independent streams)')
    args = parser.parse_args(argv)
    for name in ('num_train', 'num_val', 'size', 'max_objects'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if not 0 < args.min_radius <= args.max_radius < 0.5:
        parser.error('need 0 < --min-radius <= --max-radius < 0.5')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    train_rng, val_rng = split_rngs(args.seed, 2)
    common = dict(size=args.size, max_objects=args.max_objects, min_radius_frac=args.min_radius,
                  max_radius_frac=args.max_radius, image_ext=args.ext)
    for split, count, rng in (('train', args.num_train, train_rng), ('val', args.num_val, val_rng)):
        try:
            ann_file = make_split(args.out, split, count, rng=rng, **common)
        except OSError as error:  # a read-only or full file system
            raise UserError(f'--out {args.out}: cannot write there ({error.strerror or error})') from None
        print(f'[synthetic] {split}: {count} images of {args.size}px -> {ann_file}', file=sys.stderr)


if __name__ == '__main__':
    run_cli(main, 'make_synthetic_coco.py')
