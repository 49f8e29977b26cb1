"""Small, seeded datasets in the COCO and ADE20K layouts, for tests and the
demo: nothing is downloaded.

Images show a few large solid shapes (circle, square, triangle) in
class-typical colours on a mildly textured background, so a detector or a
segmentor can learn them in a few hundred CPU iterations. Masks and boxes
are rasterised from the same polygons that are drawn, so the annotations
agree with the pixels exactly. Only numpy and Pillow are needed.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

TOY_COCO_CLASSES = ('circle', 'square', 'triangle')
TOY_COCO_PALETTE = [(220, 20, 60), (0, 128, 255), (60, 179, 113)]
# ADE20K label values (1-based, 0 = ignore) of the classes the toy
# segmentation data uses, so that mmseg's ADE20KDataset reads it unchanged:
# the background is 'wall', the shapes 'building', 'sky' and 'tree'.
TOY_ADE20K_LABELS = {1: 'wall', 2: 'building', 3: 'sky', 5: 'tree'}
_ADE20K_SHAPE_LABELS = (2, 3, 5)

_BASE_COLOURS = np.array([(200, 40, 40), (40, 90, 210), (40, 170, 70)])
_META = 'toy_meta.json'


def _shape_polygon(kind: int, cx: float, cy: float, size: float,
                   angle: float) -> List[Tuple[float, float]]:
    """Vertices of a circle (28-gon), square or triangle of ``size``."""
    if kind == 0:
        count, radius, angle = 28, size / 2, 0.
    elif kind == 1:
        count, radius = 4, size / math.sqrt(2)
    else:
        count, radius = 3, size / math.sqrt(3)
    return [(cx + radius * math.cos(angle + 2 * math.pi * i / count),
             cy + radius * math.sin(angle + 2 * math.pi * i / count))
            for i in range(count)]


def _draw_image(rng: np.random.Generator, width: int, height: int,
                max_shapes: int):
    """An image and its shapes: ``[(kind, polygon, mask)]`` in draw order,
    placed so that they overlap little."""
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 12, size=(height, width, 3))
    gradient = np.linspace(-20, 20, width)[None, :, None]
    image = np.clip(base + noise + gradient, 0, 255)
    shapes, occupied = [], np.zeros((height, width), bool)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(0, 3))
            size = float(rng.uniform(0.18, 0.42) * min(width, height))
            cx = float(rng.uniform(size / 2 + 2, width - size / 2 - 2))
            cy = float(rng.uniform(size / 2 + 2, height - size / 2 - 2))
            polygon = _shape_polygon(kind, cx, cy, size,
                                     float(rng.uniform(0, math.pi)))
            canvas = Image.new('L', (width, height), 0)
            ImageDraw.Draw(canvas).polygon(polygon, fill=1)
            mask = np.asarray(canvas, bool)
            if mask.sum() > 16 and (mask & occupied).sum() == 0:
                break
        else:
            continue
        colour = np.clip(_BASE_COLOURS[kind] + rng.integers(-30, 31, 3), 0,
                         255)
        image[mask] = colour + rng.normal(0, 6, size=(mask.sum(), 3))
        occupied |= mask
        shapes.append((kind, polygon, mask))
    return np.clip(image, 0, 255).astype(np.uint8), shapes


def _is_current(root: str, params: dict) -> bool:
    """Whether ``root`` holds a dataset written with ``params``."""
    path = osp.join(root, _META)
    if not osp.exists(path):
        return False
    with open(path) as f:
        written = json.load(f)
    return {k: v for k, v in written.items() if k != 'counts'} == params


def _write_meta(root: str, params: dict) -> None:
    with open(osp.join(root, _META), 'w') as f:
        json.dump(params, f, indent=1)


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]


def make_toy_coco(root: str,
                  num_train: int = 200,
                  num_val: int = 50,
                  image_size: Sequence[int] = (320, 256),
                  seed: int = 0,
                  max_shapes: int = 3) -> Dict[str, object]:
    """Write a COCO-format instance dataset in COCO's own layout.

    ``root/{train2017,val2017}/*.jpg`` and
    ``root/annotations/instances_{train2017,val2017}.json`` with boxes,
    polygon masks and areas, so mmdet's COCO configs work by changing only
    ``data_root`` and ``metainfo``. Idempotent: an existing dataset written
    with the same arguments is kept.

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        image_size (Sequence[int]): ``(width, height)``.
            Defaults to ``(320, 256)``.
        seed (int): Random seed. Defaults to 0.
        max_shapes (int): Most shapes per image. Defaults to 3.

    Returns:
        dict: ``root``, ``train_ann``, ``val_ann`` (absolute paths),
        ``classes`` and the image and instance counts.
    """
    root = osp.abspath(root)
    width, height = image_size
    params = dict(
        kind='coco',
        num_train=num_train,
        num_val=num_val,
        image_size=[width, height],
        seed=seed,
        max_shapes=max_shapes,
        version=1)
    result = dict(
        root=root,
        train_ann=osp.join(root, 'annotations', 'instances_train2017.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val2017.json'),
        classes=TOY_COCO_CLASSES)
    if _is_current(root, params):
        with open(osp.join(root, _META)) as f:
            result.update(json.load(f).get('counts', {}))
        return result
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    counts = {}
    for split, num in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(num):
            image, shapes = _draw_image(rng, width, height, max_shapes)
            name = f'{index:06d}.jpg'
            Image.fromarray(image).save(
                osp.join(root, split, name), quality=95)
            image_id = index + 1
            images.append(
                dict(id=image_id, file_name=name, width=width, height=height))
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
        with open(
                osp.join(root, 'annotations', f'instances_{split}.json'),
                'w') as f:
            json.dump(
                dict(
                    info=dict(
                        description='mixer_backbones toy shapes', version='1'),
                    licenses=[],
                    images=images,
                    annotations=annotations,
                    categories=[
                        dict(id=i + 1, name=name, supercategory='shape')
                        for i, name in enumerate(TOY_COCO_CLASSES)
                    ]), f)
        counts[f'{split[:-4]}_images'] = num
        counts[f'{split[:-4]}_instances'] = len(annotations)
    _write_meta(root, dict(params, counts=counts))
    result.update(counts)
    return result


def make_toy_ade20k(root: str,
                    num_train: int = 100,
                    num_val: int = 20,
                    image_size: Sequence[int] = (256, 256),
                    seed: int = 0,
                    max_shapes: int = 3) -> Dict[str, object]:
    """Write a semantic segmentation dataset in ADE20K's layout.

    ``root/images/{training,validation}/*.jpg`` and
    ``root/annotations/{training,validation}/*.png`` (uint8 label maps in
    ADE's numbering, 0 = ignore, see ``TOY_ADE20K_LABELS``), readable by
    mmseg's ``ADE20KDataset`` unchanged. Idempotent like
    :func:`make_toy_coco`.

    Returns:
        dict: ``root`` and the image counts.
    """
    root = osp.abspath(root)
    width, height = image_size
    params = dict(
        kind='ade20k',
        num_train=num_train,
        num_val=num_val,
        image_size=[width, height],
        seed=seed,
        max_shapes=max_shapes,
        version=1)
    result = dict(
        root=root,
        train_images=num_train,
        val_images=num_val,
        labels=TOY_ADE20K_LABELS)
    if _is_current(root, params):
        return result
    rng = np.random.default_rng(seed)
    for split, num in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for index in range(num):
            image, shapes = _draw_image(rng, width, height, max_shapes)
            labels = np.ones((height, width), np.uint8)  # 'wall'
            for kind, _, mask in shapes:
                labels[mask] = _ADE20K_SHAPE_LABELS[kind]
            stem = f'toy_{split}_{index:06d}'
            Image.fromarray(image).save(
                osp.join(root, 'images', split, stem + '.jpg'), quality=95)
            Image.fromarray(labels).save(
                osp.join(root, 'annotations', split, stem + '.png'))
    _write_meta(root, params)
    return result
