"""Convert a dataset in Pascal VOC XML, YOLO txt or LabelMe JSON format into one COCO instances file (or a train and
a val file), ready for ``CocoDataset`` and the custom-dataset config templates in ``configs/custom/``.

    python tools/dataset_converters/to_coco.py voc --ann-dir VOC/Annotations --img-dir VOC/JPEGImages \
        [--image-set VOC/ImageSets/Main/trainval.txt] --out data/my/annotations/instances.json
    python tools/dataset_converters/to_coco.py yolo --img-dir data/my/images [--label-dir data/my/labels] \
        --classes data/my/classes.txt --out data/my/annotations/instances.json
    python tools/dataset_converters/to_coco.py labelme --json-dir data/my/labelme [--img-dir DIR] \
        --out data/my/annotations/instances.json
    common options: --classes FILE|NAME,NAME (the category order; default: every name found, sorted)
                    --val-ratio 0.1 [--seed 0] (write OUT's stem + _train.json and _val.json instead of OUT)

Coordinates: COCO boxes are ``[x, y, w, h]`` in pixels with (0, 0) the image's top-left corner. VOC's pixel
indices are 1-based and inclusive, so ``xmin=1, xmax=10`` becomes ``x=0, w=10``; VOC ``difficult`` objects become
``iscrowd=1`` (ignored in training and evaluation, as the VOC benchmark ignores them). YOLO lines are ``class cx cy
w h`` normalised to the image size (read from the image's header), or ``class x1 y1 x2 y2 ...`` polygons (YOLO
segmentation), which keep their polygon. LabelMe ``polygon``, ``rectangle`` and ``circle`` shapes become instances
(polygons keep their mask; shapes sharing a ``group_id`` are one instance with several polygons); ``line``,
``linestrip`` and ``point`` shapes have no area and are skipped with a count. Boxes are clipped to the image; boxes
with no area left are dropped and counted. Bad input (a missing folder, a malformed file, an unknown class) stops
with one line naming the file.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import random
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

if __package__ in (None, ''):  # run as a script: make `mmcv_custom` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class CocoBuilder:
    """Collects images, categories and instances and writes a COCO instances dict.

    Ids are 1-based: categories in the order of ``classes``, images and annotations in the order added.
    ``classes=None`` accepts every name (categories are then sorted by name when the file is written).
    """

    def __init__(self, classes: list[str] | None = None) -> None:
        self.fixed_classes = classes is not None
        self.classes: list[str] = list(classes or [])
        self.images: list[dict] = []
        self.annotations: list[tuple[str, dict]] = []  # (class name, annotation without category_id)
        self.skipped: Counter = Counter()

    def add_image(self, file_name: str, width: int, height: int) -> int:
        if width <= 0 or height <= 0:
            raise UserError(f'image {file_name}: size {width}x{height} is not positive')
        self.images.append(dict(id=len(self.images) + 1, file_name=file_name, width=int(width), height=int(height)))
        return len(self.images)

    def add_instance(self, image_id: int, name: str, box_xyxy: tuple[float, float, float, float],
                     polygons: list[list[float]] | None = None, iscrowd: int = 0, source: str = '') -> bool:
        """Add one instance (box corners in pixels); returns False when it is dropped (no area inside the image)."""
        if name not in self.classes:
            if self.fixed_classes:
                raise UserError(f'{source}: class {name!r} is not in --classes ({", ".join(self.classes)})')
            self.classes.append(name)
        image = self.images[image_id - 1]
        x1, y1, x2, y2 = (float(v) for v in box_xyxy)
        x1, x2 = min(max(x1, 0.0), image['width']), min(max(x2, 0.0), image['width'])
        y1, y2 = min(max(y1, 0.0), image['height']), min(max(y2, 0.0), image['height'])
        if x2 <= x1 or y2 <= y1:
            self.skipped['boxes with no area inside the image'] += 1
            return False
        ann = dict(image_id=image_id, bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=int(iscrowd))
        if polygons:
            ann['segmentation'] = [[float(v) for v in poly] for poly in polygons]
            ann['area'] = float(sum(polygon_area(poly) for poly in polygons))
        else:
            ann['area'] = (x2 - x1) * (y2 - y1)
        self.annotations.append((name, ann))
        return True

    def to_dict(self, image_ids: set[int] | None = None) -> dict:
        """The COCO dict, restricted to ``image_ids`` (re-numbered from 1) when given."""
        classes = self.classes if self.fixed_classes else sorted(self.classes)
        cat_ids = {name: i for i, name in enumerate(classes, start=1)}
        keep = [im for im in self.images if image_ids is None or im['id'] in image_ids]
        new_ids = {im['id']: i for i, im in enumerate(keep, start=1)}
        images = [dict(im, id=new_ids[im['id']]) for im in keep]
        annotations = []
        for name, ann in self.annotations:
            if ann['image_id'] in new_ids:
                annotations.append(dict(ann, id=len(annotations) + 1, image_id=new_ids[ann['image_id']],
                                        category_id=cat_ids[name]))
        categories = [dict(id=i, name=name, supercategory='none') for name, i in cat_ids.items()]
        return dict(images=images, annotations=annotations, categories=categories)

    def write(self, out: str, val_ratio: float = 0.0, seed: int = 0) -> list[str]:
        """Write ``out`` (or ``<stem>_train.json`` and ``<stem>_val.json`` with ``val_ratio > 0``); return paths."""
        if not self.images:
            raise UserError('no images found to convert')
        splits: list[tuple[str, set[int] | None]] = [(out, None)]
        if val_ratio > 0:
            ids = [im['id'] for im in self.images]
            random.Random(seed).shuffle(ids)
            num_val = max(1, round(len(ids) * val_ratio))
            if num_val >= len(ids):
                raise UserError(f'--val-ratio {val_ratio} leaves no training image ({len(ids)} images)')
            stem = out[:-5] if out.endswith('.json') else out
            splits = [(f'{stem}_train.json', set(ids[num_val:])), (f'{stem}_val.json', set(ids[:num_val]))]
        paths = []
        for path, ids in splits:
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
            coco = self.to_dict(ids)
            with open(path, 'w') as f:
                json.dump(coco, f)
            print(f'[to_coco] wrote {path}: {len(coco["images"])} images, {len(coco["annotations"])} instances, '
                  f'{len(coco["categories"])} classes')
            paths.append(path)
        for reason, count in sorted(self.skipped.items()):
            print(f'[to_coco] skipped {count} {reason}')
        classes = self.classes if self.fixed_classes else sorted(self.classes)
        print(f'[to_coco] for the config: classes = {tuple(classes)!r}  (num_classes={len(classes)})')
        return paths


def polygon_area(flat: list[float]) -> float:
    """Shoelace area of a polygon given as [x0, y0, x1, y1, ...]."""
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


def polygon_box(flat: list[float]) -> tuple[float, float, float, float]:
    xs, ys = flat[0::2], flat[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def read_classes(value: str | None) -> list[str] | None:
    """``--classes``: a file (one name a line, or a YOLO data.yaml ``names:`` list) or comma-separated names."""
    if value is None:
        return None
    if osp.isfile(value):
        with open(value) as f:
            text = f.read()
        if value.endswith(('.yaml', '.yml')):
            import yaml
            names = (yaml.safe_load(text) or {}).get('names')
            names = list(names.values()) if isinstance(names, dict) else names
            if not isinstance(names, list):
                raise UserError(f'--classes {value}: no "names:" list in this YAML file')
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [name.strip() for name in value.split(',') if name.strip()]
    if not names:
        raise UserError(f'--classes {value}: no class names')
    if len(set(names)) != len(names):
        raise UserError(f'--classes {value}: repeated class names ({", ".join(sorted(_repeated(names)))})')
    return [str(name) for name in names]


def _repeated(names: list[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _require_dir(path: str, option: str) -> None:
    if not osp.isdir(path):
        raise UserError(f'{option} {path}: folder does not exist')


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the image file's header (the pixels are not decoded)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # noqa: BLE001  (PIL raises many types for a bad file)
        raise UserError(f'image {path} cannot be read ({type(error).__name__}: {error})') from None


# ------------------------------------------------------------------------------------------------------------ VOC
def _xml_text(node: ET.Element, tag: str, source: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise UserError(f'{source}: <{tag}> is missing')
    return child.text.strip()


def _xml_number(node: ET.Element, tag: str, source: str) -> float:
    text = _xml_text(node, tag, source)
    try:
        return float(text)
    except ValueError:
        raise UserError(f'{source}: <{tag}> is {text!r}, not a number') from None


def convert_voc(ann_dir: str, builder: CocoBuilder, img_dir: str | None = None, image_set: str | None = None) -> None:
    _require_dir(ann_dir, '--ann-dir')
    if image_set is not None:
        if not osp.isfile(image_set):
            raise UserError(f'--image-set {image_set}: file does not exist')
        with open(image_set) as f:
            stems = [line.split()[0] for line in f if line.strip()]
        files = [osp.join(ann_dir, f'{stem}.xml') for stem in stems]
    else:
        files = sorted(osp.join(ann_dir, name) for name in os.listdir(ann_dir) if name.endswith('.xml'))
    for path in files:
        if not osp.isfile(path):
            raise UserError(f'--image-set {image_set}: {path} does not exist')
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            raise UserError(f'{path}: not valid XML ({error})') from None
        file_name = _xml_text(root, 'filename', path)
        size = root.find('size')
        if size is not None and size.find('width') is not None:
            width, height = int(_xml_number(size, 'width', path)), int(_xml_number(size, 'height', path))
        elif img_dir is not None:  # some exporters leave <size> out
            width, height = image_size(osp.join(img_dir, file_name))
        else:
            raise UserError(f'{path}: <size> is missing (pass --img-dir to read the size from the image)')
        image_id = builder.add_image(file_name, width, height)
        for obj in root.findall('object'):
            name = _xml_text(obj, 'name', path)
            box = obj.find('bndbox')
            if box is None:
                raise UserError(f'{path}: object {name!r} has no <bndbox>')
            xmin, ymin, xmax, ymax = (_xml_number(box, tag, path) for tag in ('xmin', 'ymin', 'xmax', 'ymax'))
            difficult = obj.find('difficult')
            iscrowd = int(difficult is not None and (difficult.text or '0').strip() == '1')
            # 1-based inclusive pixel indices -> continuous 0-based corners
            builder.add_instance(image_id, name, (xmin - 1, ymin - 1, xmax, ymax), iscrowd=iscrowd, source=path)


# ----------------------------------------------------------------------------------------------------------- YOLO
def _list_images(img_dir: str) -> list[str]:
    paths = []
    for folder, _, names in os.walk(img_dir):
        paths += [osp.join(folder, name) for name in names if name.lower().endswith(IMAGE_EXTS)]
    return sorted(paths)


def convert_yolo(img_dir: str, builder: CocoBuilder, label_dir: str | None = None) -> None:
    _require_dir(img_dir, '--img-dir')
    if not builder.fixed_classes:
        raise UserError('yolo: --classes is required (YOLO labels are class indices: pass classes.txt or data.yaml)')
    if label_dir is None:  # YOLO's layout: .../images/x.jpg -> .../labels/x.txt
        parts = Path(osp.abspath(img_dir)).parts
        if 'images' not in parts:
            raise UserError(f'--img-dir {img_dir}: no "images" folder in the path to derive --label-dir from; '
                            'pass --label-dir')
        i = len(parts) - 1 - parts[::-1].index('images')
        label_dir = str(Path(*parts[:i], 'labels', *parts[i + 1:]))
    _require_dir(label_dir, '--label-dir')
    for path in _list_images(img_dir):
        rel = osp.relpath(path, img_dir)
        width, height = image_size(path)
        image_id = builder.add_image(rel, width, height)
        label_file = osp.join(label_dir, osp.splitext(rel)[0] + '.txt')
        if not osp.isfile(label_file):  # YOLO: an image without a label file has no objects
            continue
        with open(label_file) as f:
            lines = [line.split() for line in f if line.strip()]
        for number, values in enumerate(lines, start=1):
            source = f'{label_file}:{number}'
            try:
                index, coords = int(values[0]), [float(v) for v in values[1:]]
            except ValueError:
                raise UserError(f'{source}: expected "class cx cy w h" (numbers), got {" ".join(values)!r}') from None
            if not 0 <= index < len(builder.classes):
                raise UserError(f'{source}: class index {index} is outside --classes (0..{len(builder.classes) - 1})')
            name = builder.classes[index]
            if len(coords) == 4:
                cx, cy, w, h = coords[0] * width, coords[1] * height, coords[2] * width, coords[3] * height
                builder.add_instance(image_id, name, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), source=source)
            elif len(coords) >= 6 and len(coords) % 2 == 0:  # segmentation: normalised polygon
                poly = [v * (width if i % 2 == 0 else height) for i, v in enumerate(coords)]
                builder.add_instance(image_id, name, polygon_box(poly), polygons=[poly], source=source)
            else:
                raise UserError(f'{source}: expected 4 box values or an even number (>= 6) of polygon values, '
                                f'got {len(coords)}')


# -------------------------------------------------------------------------------------------------------- LabelMe
def _shape_polygon(shape: dict, source: str) -> list[float] | None:
    """The shape as a flat polygon; None for shapes without an area (line, linestrip, point)."""
    kind = shape.get('shape_type') or 'polygon'
    try:
        points = [(float(x), float(y)) for x, y in shape['points']]
    except (KeyError, TypeError, ValueError):
        raise UserError(f'{source}: shape {shape.get("label")!r} has no valid "points" list') from None
    if kind == 'polygon' and len(points) >= 3:
        return [v for point in points for v in point]
    if kind == 'rectangle' and len(points) == 2:
        (x1, y1), (x2, y2) = points
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        return [x1, y1, x2, y1, x2, y2, x1, y2]
    if kind == 'circle' and len(points) == 2:
        import math
        (cx, cy), (ex, ey) = points
        r = math.hypot(ex - cx, ey - cy)
        return [v for k in range(16) for v in (cx + r * math.cos(k * math.pi / 8), cy + r * math.sin(k * math.pi / 8))]
    return None


def convert_labelme(json_dir: str, builder: CocoBuilder, img_dir: str | None = None) -> None:
    _require_dir(json_dir, '--json-dir')
    img_dir = img_dir or json_dir
    files = sorted(osp.join(json_dir, name) for name in os.listdir(json_dir) if name.endswith('.json'))
    if not files:
        raise UserError(f'--json-dir {json_dir}: no .json files')
    for path in files:
        try:
            with open(path) as f:
                record = json.load(f)
        except json.JSONDecodeError as error:
            raise UserError(f'{path}: not valid JSON ({error})') from None
        if not isinstance(record, dict) or 'shapes' not in record or 'imagePath' not in record:
            raise UserError(f'{path}: not a LabelMe file (no "shapes" / "imagePath")')
        # imagePath is relative to the JSON file; file_name is relative to the image folder of the config
        image_path = osp.normpath(osp.join(osp.dirname(path), record['imagePath']))
        file_name = osp.relpath(image_path, img_dir)
        width, height = record.get('imageWidth'), record.get('imageHeight')
        if not (width and height):
            width, height = image_size(image_path)
        image_id = builder.add_image(file_name, width, height)
        groups: dict[tuple, list[list[float]]] = {}
        for number, shape in enumerate(record['shapes']):
            source = f'{path} shape {number}'
            polygon = _shape_polygon(shape, source)
            if polygon is None:
                builder.skipped[f'LabelMe {shape.get("shape_type")} shapes (no area)'] += 1
                continue
            group = shape.get('group_id')
            key = (shape.get('label'), group) if group is not None else (shape.get('label'), 'shape', number)
            groups.setdefault(key, []).append(polygon)
        for (label, *_), polygons in groups.items():
            if not label:
                raise UserError(f'{path}: a shape has no label')
            boxes = [polygon_box(poly) for poly in polygons]
            box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                   max(b[3] for b in boxes))
            builder.add_instance(image_id, str(label), box, polygons=polygons, source=path)


# ------------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert VOC XML, YOLO txt or LabelMe JSON annotations to COCO')
    sub = parser.add_subparsers(dest='format', required=True)
    voc = sub.add_parser('voc', help='Pascal VOC XML files')
    voc.add_argument('--ann-dir', required=True, help='folder of VOC .xml files (VOC/Annotations)')
    voc.add_argument('--img-dir', help='image folder (only read when an XML file has no <size>)')
    voc.add_argument('--image-set', help='list of image ids to convert (VOC/ImageSets/Main/trainval.txt)')
    yolo = sub.add_parser('yolo', help='YOLO txt labels (boxes or polygons)')
    yolo.add_argument('--img-dir', required=True, help='image folder (searched recursively)')
    yolo.add_argument('--label-dir', help='label folder (default: the image path with images/ -> labels/)')
    labelme = sub.add_parser('labelme', help='a folder of LabelMe JSON files')
    labelme.add_argument('--json-dir', required=True, help='folder of LabelMe .json files')
    labelme.add_argument('--img-dir', help='folder the file names are relative to (default: --json-dir)')
    for sub_parser in (voc, yolo, labelme):
        sub_parser.add_argument('--out', required=True, help='output COCO json file')
        sub_parser.add_argument('--classes', help='class order: a file (one name a line, or data.yaml) or '
                                                  'NAME,NAME,... (default: every name found, sorted; required '
                                                  'for yolo)')
        sub_parser.add_argument('--val-ratio', type=float, default=0.0,
                                help='hold out this fraction of the images: writes <out>_train.json and _val.json')
        sub_parser.add_argument('--seed', type=int, default=0, help='seed of the train/val split')
        add_debug_argument(sub_parser)
    args = parser.parse_args(argv)
    if not 0 <= args.val_ratio < 1:
        parser.error(f'--val-ratio {args.val_ratio}: must be in [0, 1)')
    return args


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    builder = CocoBuilder(read_classes(args.classes))
    if args.format == 'voc':
        convert_voc(args.ann_dir, builder, args.img_dir, args.image_set)
    elif args.format == 'yolo':
        convert_yolo(args.img_dir, builder, args.label_dir)
    else:
        convert_labelme(args.json_dir, builder, args.img_dir)
    return builder.write(args.out, args.val_ratio, args.seed)


if __name__ == '__main__':
    run_cli(main, 'to_coco.py')
