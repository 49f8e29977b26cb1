"""The toy datasets: deterministic, annotations that agree with the pixels,
and readable and scorable by the real host datasets and metrics (those
parts are skipped where mmdet, mmseg or pycocotools are missing)."""
import filecmp
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mixer_backbones.toy_data import (TOY_ADE20K_LABELS, TOY_COCO_CLASSES,
                                      TOY_COCO_PALETTE, make_toy_ade20k,
                                      make_toy_coco)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = (160, 128)  # (width, height): keeps these tests fast


def read(path):
    with open(path) as f:
        return json.load(f)


def same_files(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def polygon_mask(mask_utils, segmentation, height, width):
    rles = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def test_constants():
    assert TOY_COCO_CLASSES == ('circle', 'square', 'triangle')
    assert len(TOY_COCO_PALETTE) == len(TOY_COCO_CLASSES)
    assert all(0 < v < 151 for v in TOY_ADE20K_LABELS)


def test_coco_layout_and_fields(tmp_path):
    data = make_toy_coco(
        tmp_path, num_train=3, num_val=2, image_size=SMALL, seed=1)
    assert data['root'] == str(tmp_path)
    assert data['train_ann'] == str(tmp_path / 'annotations' /
                                    'instances_train2017.json')
    assert data['val_ann'] == str(tmp_path / 'annotations' /
                                  'instances_val2017.json')
    for split, count in (('train', 3), ('val', 2)):
        dataset = read(data[f'{split}_ann'])
        assert set(dataset) >= {
            'info', 'licenses', 'images', 'annotations', 'categories'
        }
        assert [(c['id'], c['name'])
                for c in dataset['categories']] == [(1, 'circle'),
                                                    (2, 'square'),
                                                    (3, 'triangle')]
        assert len(dataset['images']) == count == data[f'{split}_images']
        assert len(dataset['annotations']) == data[f'{split}_instances']
        assert len({a['id']
                    for a in dataset['annotations']
                    }) == len(dataset['annotations'])
        for image in dataset['images']:
            path = osp.join(data[f'{split}_img_dir'], image['file_name'])
            assert osp.dirname(path) == str(tmp_path / f'{split}2017')
            with Image.open(path) as pil:
                assert pil.size == (image['width'], image['height']) == SMALL
                assert pil.mode == 'RGB'
            # 1 to 4 shapes per image
            assert 1 <= sum(a['image_id'] == image['id']
                            for a in dataset['annotations']) <= 4
        for ann in dataset['annotations']:
            assert ann['iscrowd'] == 0 and ann['category_id'] in (1, 2, 3)
            assert len(ann['bbox']) == 4 and ann['area'] > 0
            (polygon, ) = ann['segmentation']
            assert len(polygon) % 2 == 0 and len(polygon) >= 6


def test_coco_is_deterministic_and_seeded(tmp_path):
    kwargs = dict(num_train=3, num_val=2, image_size=SMALL)
    a = make_toy_coco(tmp_path / 'a', seed=7, **kwargs)
    b = make_toy_coco(tmp_path / 'b', seed=7, **kwargs)
    c = make_toy_coco(tmp_path / 'c', seed=8, **kwargs)
    for key in ('train_ann', 'val_ann'):
        assert read(a[key]) == read(b[key])
        assert read(a[key]) != read(c[key])
    for key in ('train_img_dir', 'val_img_dir'):
        assert same_files(a[key], b[key])
        assert not same_files(a[key], c[key])


def test_ade20k_is_deterministic_and_seeded(tmp_path):
    kwargs = dict(num_train=2, num_val=2, image_size=(96, 64))
    a = make_toy_ade20k(tmp_path / 'a', seed=7, **kwargs)
    b = make_toy_ade20k(tmp_path / 'b', seed=7, **kwargs)
    c = make_toy_ade20k(tmp_path / 'c', seed=8, **kwargs)
    for key in ('train_img_dir', 'train_ann_dir', 'val_img_dir',
                'val_ann_dir'):
        assert same_files(a[key], b[key])
        assert not same_files(a[key], c[key])


def test_ade20k_layout_and_labels(tmp_path):
    data = make_toy_ade20k(
        tmp_path, num_train=3, num_val=2, image_size=(96, 64), seed=2)
    assert data['train_images'] == 3 and data['val_images'] == 2
    seen = set()
    for split, short, count in (('training', 'train', 3), ('validation', 'val',
                                                           2)):
        images = sorted(os.listdir(tmp_path / 'images' / split))
        labels = sorted(os.listdir(tmp_path / 'annotations' / split))
        assert data[f'{short}_img_dir'] == str(tmp_path / 'images' / split)
        assert data[f'{short}_ann_dir'] == str(tmp_path / 'annotations' /
                                               split)
        assert len(images) == count
        assert [osp.splitext(n) for n in images
                ] == [(osp.splitext(n)[0], '.jpg') for n in labels]
        assert all(n.endswith('.png') for n in labels)
        for name in labels:
            with Image.open(tmp_path / 'annotations' / split / name) as pil:
                label = np.asarray(pil)
            assert label.dtype == np.uint8 and label.shape == (64, 96)
            seen |= set(np.unique(label).tolist())
    assert 1 in seen and len(seen) >= 2 and seen <= set(TOY_ADE20K_LABELS)


def test_generation_is_idempotent(tmp_path):
    kwargs = dict(num_train=2, image_size=SMALL)
    first = make_toy_coco(tmp_path, num_val=3, **kwargs)
    stamps = {
        p: os.stat(osp.join(first['val_img_dir'], p)).st_mtime_ns
        for p in os.listdir(first['val_img_dir'])
    }
    stamps['ann'] = os.stat(first['val_ann']).st_mtime_ns
    again = make_toy_coco(tmp_path, num_val=3, **kwargs)
    assert again == first
    assert stamps['ann'] == os.stat(first['val_ann']).st_mtime_ns
    assert all(
        stamps[p] == os.stat(osp.join(first['val_img_dir'], p)).st_mtime_ns
        for p in os.listdir(first['val_img_dir']))
    # Other arguments: rewritten, with no image left over.
    smaller = make_toy_coco(tmp_path, num_val=1, **kwargs)
    assert smaller['val_images'] == 1
    assert len(read(first['val_ann'])['images']) == 1
    assert len(os.listdir(first['val_img_dir'])) == 1
    # A missing file makes it incomplete: rewritten.
    os.remove(first['train_ann'])
    assert make_toy_coco(tmp_path, num_val=1, **kwargs) == smaller
    assert osp.isfile(first['train_ann'])


def test_ade20k_is_idempotent_and_leaves_nothing_over(tmp_path):
    kwargs = dict(num_train=1, image_size=(64, 64))
    data = make_toy_ade20k(tmp_path, num_val=3, **kwargs)
    label = osp.join(data['val_ann_dir'], os.listdir(data['val_ann_dir'])[0])
    stamp = os.stat(label).st_mtime_ns
    assert make_toy_ade20k(tmp_path, num_val=3, **kwargs) == data
    assert os.stat(label).st_mtime_ns == stamp
    make_toy_ade20k(tmp_path, num_val=2, **kwargs)
    assert len(os.listdir(data['val_img_dir'])) == 2
    assert len(os.listdir(data['val_ann_dir'])) == 2


def test_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / 'coco' / 'annotations').mkdir(parents=True)
    (tmp_path / 'coco' / 'annotations' /
     'instances_val2017.json').write_text('{}')
    with pytest.raises(FileExistsError):
        make_toy_coco(tmp_path / 'coco', num_train=1, num_val=1)
    assert (tmp_path / 'coco' / 'annotations' /
            'instances_val2017.json').read_text() == '{}'
    (tmp_path / 'ade' / 'images' / 'training').mkdir(parents=True)
    (tmp_path / 'ade' / 'images' / 'training' / 'ADE_train_1.jpg').touch()
    with pytest.raises(FileExistsError):
        make_toy_ade20k(tmp_path / 'ade', num_train=1, num_val=1)


def test_coco_annotations_agree_with_pixels(tmp_path):
    mask_utils = pytest.importorskip('pycocotools.mask')
    data = make_toy_coco(tmp_path, num_train=1, num_val=8, seed=3)
    dataset = read(data['val_ann'])
    images = {image['id']: image for image in dataset['images']}
    assert len(dataset['annotations']) >= 8
    dominant = {1: 0, 2: 2, 3: 1}  # circles red, squares blue, ...
    union = {}
    for ann in dataset['annotations']:
        image = images[ann['image_id']]
        height, width = image['height'], image['width']
        xs_poly = ann['segmentation'][0][0::2]
        ys_poly = ann['segmentation'][0][1::2]
        # Wholly inside the image.
        assert min(xs_poly) >= 0 and max(xs_poly) <= width - 1
        assert min(ys_poly) >= 0 and max(ys_poly) <= height - 1
        mask = polygon_mask(mask_utils, ann['segmentation'], height, width)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        # The box encloses the polygon's pixels (to a pixel), and is tight.
        assert xs.min() >= x - 1 and xs.max() <= x + w
        assert ys.min() >= y - 1 and ys.max() <= y + h
        assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
        assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1
        assert ann['area'] == pytest.approx(mask.sum(), rel=0.1)
        assert w >= 30 and h >= 20 and ann['area'] > 400
        # The polygon covers the drawn shape: its pixels have the class's
        # colour, the pixels just outside its box the background's.
        with Image.open(osp.join(data['val_img_dir'],
                                 image['file_name'])) as pil:
            pixels = np.asarray(pil).astype(float)
        inner = mask & ~np.logical_or.reduce(
            [np.roll(~mask, s, axis) for s in (-2, 2) for axis in (0, 1)])
        colour = pixels[inner].mean(0)
        assert colour.argmax() == dominant[ann['category_id']], colour
        assert colour.max() - np.sort(colour)[1] > 60, colour
        # Limited overlap: none, in fact.
        seen = union.setdefault(ann['image_id'], np.zeros_like(mask))
        assert (seen & mask).sum() <= 0.02 * mask.sum()
        seen |= mask


def gt_as_detections(coco):
    return [
        dict(
            image_id=a['image_id'],
            category_id=a['category_id'],
            bbox=a['bbox'],
            score=1.0,
            segmentation=a['segmentation'])
        for a in coco.dataset['annotations']
    ]


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_pycocotools_scores_ground_truth_as_perfect(tmp_path, iou_type):
    coco_module = pytest.importorskip('pycocotools.coco')
    from pycocotools.cocoeval import COCOeval
    data = make_toy_coco(
        tmp_path, num_train=1, num_val=5, image_size=SMALL, seed=4)
    coco = coco_module.COCO(data['val_ann'])
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4, 5]
    evaluation = COCOeval(coco, coco.loadRes(gt_as_detections(coco)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP@.5


def test_mmdet_dataset_pipeline_and_metric(tmp_path):
    pytest.importorskip('mmdet')
    torch = pytest.importorskip('torch')
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmdet.utils import register_all_modules
    from pycocotools import mask as mask_utils
    register_all_modules()
    data = make_toy_coco(
        tmp_path, num_train=1, num_val=5, image_size=SMALL, seed=5)
    dataset = CocoDataset(
        data_root=data['root'],
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=TOY_COCO_CLASSES),
        pipeline=[],
        test_mode=True)
    assert len(dataset) == 5
    assert dataset.metainfo['classes'] == TOY_COCO_CLASSES
    metric = CocoMetric(ann_file=data['val_ann'], metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        info = dataset[index]
        height, width = info['height'], info['width']
        assert osp.isfile(info['img_path'])
        instances = info['instances']
        assert instances and all('mask' in i and len(i['bbox']) == 4
                                 for i in instances)
        boxes = torch.tensor([i['bbox'] for i in instances])  # x1y1x2y2
        masks = np.stack([
            polygon_mask(mask_utils, i['mask'], height, width)
            for i in instances
        ])
        prediction = dict(
            img_id=info['img_id'],
            ori_shape=(height, width),
            pred_instances=dict(
                bboxes=boxes,
                scores=torch.ones(len(instances)),
                labels=torch.tensor([i['bbox_label'] for i in instances]),
                masks=torch.from_numpy(masks)))
        metric.process({}, [prediction])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)

    # Through the training pipeline's loading transforms: image, boxes and
    # masks agree in size and place.
    loaded = CocoDataset(
        data_root=data['root'],
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=TOY_COCO_CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        ])
    results = loaded[0]
    assert results['img'].shape == (SMALL[1], SMALL[0], 3)
    masks = results['gt_masks'].to_ndarray()
    boxes = results['gt_bboxes'].numpy()
    assert len(masks) == len(boxes) > 0
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        ys, xs = np.nonzero(mask)
        assert xs.min() >= x1 - 1 and xs.max() <= x2
        assert ys.min() >= y1 - 1 and ys.max() <= y2


def test_ade20k_dataset_pipeline_and_metric(tmp_path):
    pytest.importorskip('mmseg')
    torch = pytest.importorskip('torch')
    from mmengine.structures import PixelData
    from mmseg.datasets import ADE20KDataset
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules()
    data = make_toy_ade20k(
        tmp_path, num_train=2, num_val=3, image_size=(96, 64), seed=6)
    names = ADE20KDataset.METAINFO['classes']
    assert {v: names[v - 1] for v in TOY_ADE20K_LABELS} == TOY_ADE20K_LABELS
    dataset = ADE20KDataset(
        data_root=data['root'],
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
        ],
        test_mode=True)
    assert len(dataset) == 3
    training = ADE20KDataset(
        data_root=data['root'],
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[])
    assert len(training) == 2
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    seen = set()
    for index in range(len(dataset)):
        results = dataset[index]
        assert results['img'].shape == (64, 96, 3)
        with Image.open(results['seg_map_path']) as pil:
            labels = np.asarray(pil).astype(np.int64)
        expected = np.where(labels > 0, labels - 1, 255)
        reduced = results['gt_seg_map']
        np.testing.assert_array_equal(reduced, expected)
        seen |= set(np.unique(reduced).tolist())
        reduced = torch.from_numpy(reduced.astype(np.int64))[None]
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=reduced)
        sample.pred_sem_seg = PixelData(data=reduced.clone())
        metric.process({}, [sample.to_dict()])
    assert seen <= {v - 1 for v in TOY_ADE20K_LABELS} and len(seen) >= 2
    assert metric.evaluate(len(dataset))['mIoU'] == pytest.approx(100.0)


def test_command_line_tool(tmp_path):
    out = tmp_path / 'toy'
    command = [
        sys.executable,
        osp.join(ROOT, 'tools', 'make_toy_data.py'), '--out',
        str(out), '--coco-train', '2', '--coco-val', '1', '--ade-train', '2',
        '--ade-val', '1', '--seed', '3', '--coco-size', '96', '64',
        '--ade-size', '64', '64'
    ]
    result = subprocess.run(
        command,
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout
    assert str(out / 'coco') in result.stdout
    assert str(out / 'ade20k') in result.stdout
    coco = read(out / 'coco' / 'annotations' / 'instances_train2017.json')
    assert len(coco['images']) == 2
    assert coco['images'][0]['width'] == 96
    assert len(os.listdir(out / 'coco' / 'val2017')) == 1
    assert len(os.listdir(out / 'ade20k' / 'images' / 'training')) == 2
    assert len(os.listdir(out / 'ade20k' / 'annotations' / 'validation')) == 1
    # The same as the library writes with the same arguments.
    direct = make_toy_coco(
        tmp_path / 'direct',
        num_train=2,
        num_val=1,
        image_size=(96, 64),
        seed=3)
    assert read(direct['train_ann']) == coco
