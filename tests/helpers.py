"""Shared test helpers: a tiny synthetic COCO-format dataset writer."""
from __future__ import annotations

import json
import os
import os.path as osp

import cv2
import numpy as np


def make_coco_dataset(root: str, num_images: int = 2, image_size: tuple[int, int] | int = (96, 128),
                      num_classes: int = 80, seed: int = 0, split: str = 'train', objects_per_image: int = 3,
                      crowd_every: int = 0) -> dict:
    """Write ``num_images`` random images and a COCO instances json under ``root``; return the paths.

    Layout: ``root/<split>/<i>.jpg`` and ``root/annotations/instances_<split>.json``. ``image_size`` is (h, w) or
    one int. Each image has ``objects_per_image`` axis-aligned rectangles painted in a random colour, each
    annotated with its box (x, y, w, h), a polygon mask (the rectangle's corners), its area and a random category in
    ``1..num_classes`` (COCO ids are 1-based here; categories are named ``class_<id>``). With ``crowd_every=k > 0``
    every k-th annotation is marked ``iscrowd=1``.
    Returns ``dict(root, img_prefix, ann_file, classes)`` ready for a dataset config.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    rng = np.random.default_rng(seed)
    img_dir = osp.join(root, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        img = rng.integers(0, 64, size=(height, width, 3), dtype=np.uint8)
        for _ in range(objects_per_image):
            w = int(rng.integers(width // 6, width // 2))
            h = int(rng.integers(height // 6, height // 2))
            x = int(rng.integers(0, width - w))
            y = int(rng.integers(0, height - h))
            img[y:y + h, x:x + w] = rng.integers(96, 256, size=3, dtype=np.uint8)
            ann_id = len(annotations) + 1
            annotations.append(dict(
                id=ann_id, image_id=image_id, category_id=int(rng.integers(1, num_classes + 1)),
                bbox=[x, y, w, h], area=float(w * h),
                segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
                iscrowd=int(crowd_every > 0 and ann_id % crowd_every == 0)))
        file_name = f'{image_id}.jpg'
        cv2.imwrite(osp.join(img_dir, file_name), img)
        images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
    classes = tuple(f'class_{i}' for i in range(1, num_classes + 1))
    categories = [dict(id=i, name=name) for i, name in enumerate(classes, start=1)]
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return dict(root=root, img_prefix=img_dir + '/', ann_file=ann_file, classes=classes)


def assert_one_graph(module, *inputs) -> None:
    """torch._dynamo traces ``module(*inputs)`` as one graph, with no graph break."""
    import torch._dynamo
    explanation = torch._dynamo.explain(module)(*inputs)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons


def assert_compiled_matches_eager(module, x) -> None:
    """``torch.compile(module, fullgraph=True)`` on the aot_eager backend (dynamo + AOTAutograd: fake shapes and the
    registered backward, without inductor's C++ build) gives eager mode's output and gradients (input, parameters)."""
    import torch
    compiled = torch.compile(module, backend='aot_eager', fullgraph=True)
    outputs, grads = [], []
    for run in (compiled, module):
        module.zero_grad()
        x_run = x.clone().requires_grad_()
        out = run(x_run)
        out.pow(2).sum().backward()
        outputs.append(out)
        grads.append([x_run.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1])
    assert all(g is not None for g in grads[0])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)
