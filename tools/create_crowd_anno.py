"""Convert CrowdHuman's odgt annotations (one JSON record per line) to the COCO-format json CrowdHumanDataset reads.

    python tools/create_crowd_anno.py --dataset CrowdHuman --dataset-split train   # and: --dataset-split val

reads ``data/CrowdHuman/annotations/annotation_train.odgt`` and writes ``annotation_train.json`` next to it.
Images are ``data/CrowdHuman/Images/<ID>.jpg`` (image ids are the running index of the odgt lines; width and
height are read from each image's header). Each full-body box ``fbox`` (x, y, w, h) becomes one annotation of
category 1 ``person``; boxes with w <= 0 or h <= 0 are skipped; boxes whose tag is not ``person`` (e.g. ``mask``,
crowds/reflections) or that carry ``extra.ignore != 0`` become ``iscrowd=1`` ignore regions.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os.path as osp
import sys

from PIL import Image

if importlib.util.find_spec('mmcv_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmcv_custom.cli.errors import UserError, run_cli


def convert_record(record: dict, image_id: int, next_ann_id: int, image_dir: str) -> tuple[dict, list[dict]]:
    """(COCO image entry, annotations) of one odgt record; annotation ids start at ``next_ann_id``."""
    file_name = record['ID'] + '.jpg'
    path = osp.join(image_dir, file_name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path} (ID {record["ID"]!r} of the odgt file) does not exist')
    with Image.open(path) as img:  # reads the header only
        width, height = img.size
    image = dict(id=image_id, file_name=file_name, width=width, height=height)
    annotations = []
    for box in record.get('gtboxes', []):
        x, y, w, h = box['fbox']
        if w <= 0 or h <= 0:
            continue
        ignore = box.get('tag') != 'person' or box.get('extra', {}).get('ignore', 0) != 0
        annotations.append(dict(id=next_ann_id + len(annotations), image_id=image_id, category_id=1,
                                bbox=[x, y, w, h], area=w * h, iscrowd=int(ignore)))
    return image, annotations


def convert(odgt_file: str, image_dir: str) -> dict:
    """The COCO-format dict for all records of ``odgt_file``."""
    images, annotations = [], []
    with open(odgt_file) as f:
        lines = [line for line in f if line.strip()]
    for image_id, line in enumerate(lines):
        image, anns = convert_record(json.loads(line), image_id, len(annotations) + 1, image_dir)
        images.append(image)
        annotations.extend(anns)
    return dict(images=images, annotations=annotations, categories=[dict(id=1, name='person')])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert CrowdHuman odgt annotations to COCO-format json')
    parser.add_argument('--dataset', default='CrowdHuman', help='dataset folder name under --data-root')
    parser.add_argument('--dataset-split', default='train', help='split name: reads annotation_<split>.odgt')
    parser.add_argument('--data-root', default='data', help='folder holding the dataset folder (default: data)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = osp.join(args.data_root, args.dataset)
    odgt_file = osp.join(root, 'annotations', f'annotation_{args.dataset_split}.odgt')
    out_file = osp.join(root, 'annotations', f'annotation_{args.dataset_split}.json')
    if not osp.isfile(odgt_file):
        raise UserError(f'annotation file {odgt_file} does not exist (check --dataset / --dataset-split / '
                        '--data-root)')
    try:
        coco = convert(odgt_file, osp.join(root, 'Images'))
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise UserError(f'{odgt_file}: {error}') from None
    with open(out_file, 'w') as f:
        json.dump(coco, f)
    print(f'wrote {out_file}: {len(coco["images"])} images, {len(coco["annotations"])} boxes')


if __name__ == '__main__':
    run_cli(main, 'create_crowd_anno.py')
