"""Small, seeded datasets in the COCO and ADE20K layouts, for tests and the
demo: nothing is downloaded.

Images show a few large solid shapes (circle, square, triangle) in
class-typical colours on a mildly textured background, so a detector or a
segmentor can learn them in a few hundred CPU iterations. Shapes never
overlap and lie wholly inside the image, and the masks, boxes and areas are
rasterised from the same polygons that are drawn, so the annotations agree
with the pixels. Only numpy and Pillow are needed.

    from mixer_backbones.toy_data import make_toy_ade20k, make_toy_coco
    coco = make_toy_coco('data/toy/coco')        # mmdet's COCO layout
    ade = make_toy_ade20k('data/toy/ade20k')     # mmseg's ADE20K layout

or ``python tools/make_toy_data.py --out data/toy``.
"""
import json
import math
import os
import os.path as osp
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    'TOY_COCO_CLASSES', 'TOY_COCO_PALETTE', 'TOY_ADE20K_LABELS',
    'make_toy_coco', 'make_toy_ade20k'
]

TOY_COCO_CLASSES = ('circle', 'square', 'triangle')
# Display colours for mmdet's visualiser (``metainfo['palette']``).
TOY_COCO_PALETTE = [(220, 20, 60), (0, 128, 255), (60, 179, 113)]
# ADE20K label values (1-based, 0 = ignore) of the classes the toy
# segmentation data uses, with ADE's names, so that mmseg's ADE20KDataset
# (reduce_zero_label=True: value v is class v - 1) reads it unchanged: the
# background is 'wall', the circles 'building', squares 'sky', triangles
# 'tree'.
TOY_ADE20K_LABELS = {1: 'wall', 2: 'building', 3: 'sky', 5: 'tree'}
_ADE20K_BACKGROUND = 1
_ADE20K_SHAPE_LABELS = (2, 3, 5)  # circle, square, triangle

# Mean colour of each shape class (jittered per shape).
_BASE_COLOURS = np.array([(200, 40, 40), (40, 90, 210), (40, 170, 70)])
_CIRCLE_VERTICES = 28
_PLACEMENT_TRIES = 30
_META = 'toy_meta.json'
# Bump when the generated data change, so that old datasets are rewritten.
_VERSION = 2


def _shape_polygon(kind: int, cx: float, cy: float, size: float,
                   angle: float) -> List[Tuple[float, float]]:
    """Vertices of a circle (28-gon), square or equilateral triangle of
    side / diameter ``size``, centred on ``(cx, cy)``."""
    count, radius = _vertices_and_radius(kind, size)
    if kind == 0:
        angle = 0.
    return [(cx + radius * math.cos(angle + 2 * math.pi * i / count),
             cy + radius * math.sin(angle + 2 * math.pi * i / count))
            for i in range(count)]


def _vertices_and_radius(kind: int, size: float) -> Tuple[int, float]:
    if kind == 0:
        return _CIRCLE_VERTICES, size / 2
    if kind == 1:
        return 4, size / math.sqrt(2)
    return 3, size / math.sqrt(3)


def _rasterise(polygon, width: int, height: int) -> np.ndarray:
    canvas = Image.new('L', (width, height), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    return np.asarray(canvas, bool)


def _draw_image(rng: np.random.Generator, width: int, height: int,
                max_shapes: int):
    """An image and its shapes: ``[(kind, polygon, mask)]`` in draw order,
    placed wholly inside the image and without overlap."""
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 12, size=(height, width, 3))
    gradient = np.linspace(-20, 20, width)[None, :, None]
    if rng.random() < 0.5:
        gradient = gradient[:, ::-1]
    image = np.clip(base + noise + gradient, 0, 255)
    shapes, occupied = [], np.zeros((height, width), bool)
    shortest = min(width, height)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        kind = int(rng.integers(0, 3))  # not redrawn: keeps classes even
        for _try in range(_PLACEMENT_TRIES):
            size = float(rng.uniform(0.18, 0.42) * shortest)
            _, radius = _vertices_and_radius(kind, size)
            radius = min(radius, shortest / 2 - 2)
            cx = float(rng.uniform(radius + 1, width - radius - 1))
            cy = float(rng.uniform(radius + 1, height - radius - 1))
            polygon = _shape_polygon(kind, cx, cy, size,
                                     float(rng.uniform(0, math.pi)))
            inside = all(0 <= x <= width - 1 and 0 <= y <= height - 1
                         for x, y in polygon)
            mask = _rasterise(polygon, width, height)
            if inside and mask.sum() > 64 and not (mask & occupied).any():
                break
        else:
            continue
        colour = np.clip(_BASE_COLOURS[kind] + rng.integers(-30, 31, 3), 0,
                         255)
        image[mask] = colour + rng.normal(0, 6, size=(mask.sum(), 3))
        occupied |= mask
        shapes.append((kind, polygon, mask))
    return np.clip(image, 0, 255).astype(np.uint8), shapes


def _bbox(mask: np.ndarray) -> List[float]:
    """``[x, y, w, h]`` of the pixels of ``mask`` (COCO's convention)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]


def _read_meta(root: str):
    try:
        with open(osp.join(root, _META)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_current(root: str, params: dict, files: Sequence[str]) -> bool:
    """Whether ``root`` holds a complete dataset written with ``params``."""
    written = _read_meta(root)
    if written is None or written.get('params') != params:
        return False
    return all(osp.isfile(osp.join(root, f)) for f in files)


def _start_writing(root: str, folders: Sequence[str],
                   generated: 're.Pattern') -> None:
    """Prepare ``root`` for (re)writing: refuse a folder that holds data not
    written here (a real dataset, say); mark the dataset as incomplete (so
    an interrupted run is never taken as complete); remove the files an
    earlier run generated in ``folders``, so none is left over when the
    counts shrink."""
    if _read_meta(root) is None:
        for folder in folders:
            path = osp.join(root, folder)
            if osp.isdir(path) and os.listdir(path):
                raise FileExistsError(
                    f'{path} is not empty and {root} has no {_META}: not '
                    'a toy dataset, not overwriting it')
    os.makedirs(root, exist_ok=True)
    _write_meta(root, None, None)
    for folder in folders:
        path = osp.join(root, folder)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if generated.fullmatch(name):
                os.remove(osp.join(path, name))


def _write_meta(root: str, params: dict, counts: dict) -> None:
    with open(osp.join(root, _META), 'w') as f:
        json.dump(dict(params=params, counts=counts), f, indent=1)


def _params(kind: str, num_train: int, num_val: int, image_size: Sequence[int],
            seed: int, max_shapes: int) -> dict:
    width, height = (int(v) for v in image_size)
    if min(width, height) < 32:
        raise ValueError(f'image_size {image_size} is too small (< 32)')
    if int(num_train) < 0 or int(num_val) < 0 or int(max_shapes) < 1:
        raise ValueError('counts must be >= 0 and max_shapes >= 1')
    return dict(
        kind=kind,
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=[width, height],
        seed=int(seed),
        max_shapes=int(max_shapes),
        version=_VERSION)


def make_toy_coco(root: str,
                  num_train: int = 200,
                  num_val: int = 50,
                  image_size: Sequence[int] = (320, 256),
                  seed: int = 0,
                  max_shapes: int = 4) -> Dict[str, object]:
    """Write a COCO-format instance dataset in COCO's own layout.

    ``root/{train2017,val2017}/*.jpg`` and
    ``root/annotations/instances_{train2017,val2017}.json`` (``info``,
    ``licenses``, ``images``, ``annotations`` with ``bbox`` ``[x, y, w,
    h]``, ``area``, polygon ``segmentation``, ``iscrowd`` 0, and
    ``categories`` 1..3 named as ``TOY_COCO_CLASSES``), so mmdet's COCO
    configs work by changing only ``data_root`` and ``metainfo``.
    Deterministic for a seed and idempotent: a complete dataset written
    with the same arguments is kept as it is (``toy_meta.json`` records
    them); otherwise it is rewritten.

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        image_size (Sequence[int]): ``(width, height)``.
            Defaults to ``(320, 256)``.
        seed (int): Random seed. Defaults to 0.
        max_shapes (int): Most shapes per image (at least one each).
            Defaults to 4.

    Returns:
        dict: ``root``, ``train_ann``, ``val_ann``, ``train_img_dir``,
        ``val_img_dir`` (absolute paths), ``classes``, and the counts
        ``train_images``, ``train_instances``, ``val_images``,
        ``val_instances``.
    """
    root = osp.abspath(root)
    params = _params('coco', num_train, num_val, image_size, seed, max_shapes)
    width, height = params['image_size']
    splits = (('train', 'train2017', params['num_train']), ('val', 'val2017',
                                                            params['num_val']))
    result = dict(root=root)
    for short, split, _ in splits:
        result[f'{short}_ann'] = osp.join(root, 'annotations',
                                          f'instances_{split}.json')
        result[f'{short}_img_dir'] = osp.join(root, split)
    result['classes'] = TOY_COCO_CLASSES
    files = [
        osp.join('annotations', f'instances_{split}.json')
        for _, split, _ in splits
    ]
    files += [
        osp.join(split, f'toy_{i + 1:06d}.jpg') for _, split, num in splits
        for i in range(num)
    ]
    if _is_current(root, params, files):
        result.update(_read_meta(root)['counts'])
        return result

    _start_writing(root, [split for _, split, _ in splits] + ['annotations'],
                   re.compile(r'(toy_)?\d{6}\.jpg|instances_\w+2017\.json'))
    rng = np.random.default_rng(params['seed'])
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(TOY_COCO_CLASSES)
    ]
    counts = {}
    for short, split, num in splits:
        images, annotations = [], []
        for index in range(num):
            image, shapes = _draw_image(rng, width, height,
                                        params['max_shapes'])
            image_id = index + 1
            name = f'toy_{image_id:06d}.jpg'
            Image.fromarray(image).save(
                osp.join(root, split, name), quality=95)
            images.append(
                dict(
                    id=image_id,
                    file_name=name,
                    width=width,
                    height=height,
                    license=0))
            for kind, polygon, mask in shapes:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=kind + 1,
                        bbox=_bbox(mask),
                        area=float(mask.sum()),
                        segmentation=[[
                            round(c, 2) for point in polygon for c in point
                        ]],
                        iscrowd=0))
        info = dict(
            description='mixer_backbones toy shapes (generated, seeded)',
            version=str(_VERSION),
            year=2017,
            contributor='mixer_backbones.toy_data',
            seed=params['seed'],
            split=split)
        with open(result[f'{short}_ann'], 'w') as f:
            json.dump(
                dict(
                    info=info,
                    licenses=[dict(id=0, name='generated', url='')],
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
        counts[f'{short}_images'] = num
        counts[f'{short}_instances'] = len(annotations)
    _write_meta(root, params, counts)
    result.update(counts)
    return result


def make_toy_ade20k(root: str,
                    num_train: int = 100,
                    num_val: int = 20,
                    image_size: Sequence[int] = (256, 256),
                    seed: int = 0,
                    max_shapes: int = 4) -> Dict[str, object]:
    """Write a semantic segmentation dataset in ADE20K's layout.

    ``root/images/{training,validation}/*.jpg`` and
    ``root/annotations/{training,validation}/*.png`` (uint8 label maps with
    the images' stems, in ADE's numbering: 0 = ignore, value v = ADE class
    v - 1, see ``TOY_ADE20K_LABELS``), readable by mmseg's
    ``ADE20KDataset`` unchanged. Deterministic and idempotent like
    :func:`make_toy_coco`.

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 100.
        num_val (int): Validation images. Defaults to 20.
        image_size (Sequence[int]): ``(width, height)``.
            Defaults to ``(256, 256)``.
        seed (int): Random seed. Defaults to 0.
        max_shapes (int): Most shapes per image (at least one each).
            Defaults to 4.

    Returns:
        dict: ``root``, ``{train,val}_img_dir``, ``{train,val}_ann_dir``
        (absolute paths), ``labels`` (``TOY_ADE20K_LABELS``) and the
        counts ``train_images``, ``val_images``.
    """
    root = osp.abspath(root)
    params = _params('ade20k', num_train, num_val, image_size, seed,
                     max_shapes)
    width, height = params['image_size']
    splits = (('train', 'training', params['num_train']), ('val', 'validation',
                                                           params['num_val']))
    result = dict(root=root)
    for short, split, _ in splits:
        result[f'{short}_img_dir'] = osp.join(root, 'images', split)
        result[f'{short}_ann_dir'] = osp.join(root, 'annotations', split)
    result['labels'] = dict(TOY_ADE20K_LABELS)
    result['train_images'] = params['num_train']
    result['val_images'] = params['num_val']

    def stem(split, index):
        return f'toy_{split}_{index + 1:06d}'

    files = [
        osp.join(folder, split,
                 stem(split, i) + ext) for _, split, num in splits
        for i in range(num)
        for folder, ext in (('images', '.jpg'), ('annotations', '.png'))
    ]
    if _is_current(root, params, files):
        return result

    _start_writing(root, [
        osp.join(folder, split) for _, split, _ in splits
        for folder in ('images', 'annotations')
    ], re.compile(r'toy_(training|validation)_\d{6}\.(jpg|png)'))
    rng = np.random.default_rng(params['seed'])
    for short, split, num in splits:
        for index in range(num):
            image, shapes = _draw_image(rng, width, height,
                                        params['max_shapes'])
            labels = np.full((height, width), _ADE20K_BACKGROUND, np.uint8)
            for kind, _, mask in shapes:
                labels[mask] = _ADE20K_SHAPE_LABELS[kind]
            name = stem(split, index)
            Image.fromarray(image).save(
                osp.join(result[f'{short}_img_dir'], name + '.jpg'),
                quality=95)
            Image.fromarray(labels).save(
                osp.join(result[f'{short}_ann_dir'], name + '.png'))
    _write_meta(root, params, dict(train_images=num_train, val_images=num_val))
    return result
