"""The toy datasets: deterministic, annotations that agree with the pixels,
and readable and scorable by the real host datasets and metrics."""
import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mixer_backbones.toy_data import (TOY_ADE20K_LABELS, TOY_COCO_CLASSES,
                                      make_toy_ade20k, make_toy_coco)


def read(path):
    with open(path) as f:
        return json.load(f)


def test_coco_is_deterministic_and_seeded(tmp_path):
    a = make_toy_coco(tmp_path / 'a', num_train=3, num_val=2, seed=7)
    b = make_toy_coco(tmp_path / 'b', num_train=3, num_val=2, seed=7)
    c = make_toy_coco(tmp_path / 'c', num_train=3, num_val=2, seed=8)
    assert read(a['val_ann']) == read(b['val_ann'])
    assert read(a['val_ann']) != read(c['val_ann'])
    images = sorted(os.listdir(osp.join(a['root'], 'train2017')))
    assert len(images) == 3
    _, mismatch, errors = filecmp.cmpfiles(
        osp.join(a['root'], 'train2017'),
        osp.join(b['root'], 'train2017'),
        images,
        shallow=False)
    assert not mismatch and not errors


def test_generation_is_idempotent(tmp_path):
    first = make_toy_coco(tmp_path, num_train=2, num_val=1)
    stamp = os.stat(first['val_ann']).st_mtime_ns
    again = make_toy_coco(tmp_path, num_train=2, num_val=1)
    assert os.stat(first['val_ann']).st_mtime_ns == stamp
    assert again == first
    make_toy_coco(tmp_path, num_train=2, num_val=2)  # other arguments
    assert len(read(first['val_ann'])['images']) == 2


def test_coco_annotations_agree_with_pixels(tmp_path):
    mask_utils = pytest.importorskip('pycocotools.mask')
    data = make_toy_coco(tmp_path, num_train=1, num_val=6, seed=3)
    dataset = read(data['val_ann'])
    assert [c['name'] for c in dataset['categories']] == list(TOY_COCO_CLASSES)
    assert len(dataset['annotations']) >= 6
    for ann in dataset['annotations']:
        image = dataset['images'][ann['image_id'] - 1]
        rles = mask_utils.frPyObjects(ann['segmentation'], image['height'],
                                      image['width'])
        mask = mask_utils.decode(mask_utils.merge(rles))
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        # The box encloses the polygon's pixels, and the areas agree.
        assert xs.min() >= x - 1 and xs.max() <= x + w
        assert ys.min() >= y - 1 and ys.max() <= y + h
        assert ann['area'] == pytest.approx(mask.sum(), rel=0.1)
        assert ann['area'] > 100


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
    data = make_toy_coco(tmp_path, num_train=1, num_val=5, seed=4)
    coco = coco_module.COCO(data['val_ann'])
    evaluation = COCOeval(coco, coco.loadRes(gt_as_detections(coco)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_mmdet_dataset_and_metric(tmp_path):
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils
    data = make_toy_coco(tmp_path, num_train=1, num_val=5, seed=5)
    dataset = CocoDataset(
        data_root=data['root'],
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=TOY_COCO_CLASSES),
        pipeline=[],
        test_mode=True)
    assert len(dataset) == 5
    metric = CocoMetric(ann_file=data['val_ann'], metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        info = dataset[index]
        height, width = info['height'], info['width']
        instances = info['instances']
        assert instances and all('mask' in i for i in instances)
        boxes = torch.tensor([i['bbox'] for i in instances])  # x1y1x2y2
        masks = np.stack([
            mask_utils.decode(
                mask_utils.merge(
                    mask_utils.frPyObjects(i['mask'], height, width)))
            for i in instances
        ])
        prediction = dict(
            img_id=info['img_id'],
            ori_shape=(height, width),
            pred_instances=dict(
                bboxes=boxes,
                scores=torch.ones(len(instances)),
                labels=torch.tensor([i['bbox_label'] for i in instances]),
                masks=torch.from_numpy(masks).bool()))
        metric.process({}, [prediction])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


def test_ade20k_layout_labels_and_metric(tmp_path):
    pytest.importorskip('mmseg')
    from mmengine.structures import PixelData
    from mmseg.datasets import ADE20KDataset
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    data = make_toy_ade20k(tmp_path, num_train=2, num_val=3, seed=6)
    names = ADE20KDataset.METAINFO['classes']
    assert {v: names[v - 1] for v in TOY_ADE20K_LABELS} == TOY_ADE20K_LABELS
    dataset = ADE20KDataset(
        data_root=data['root'],
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[],
        test_mode=True)
    assert len(dataset) == 3
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    seen = set()
    for index in range(len(dataset)):
        labels = np.asarray(Image.open(dataset[index]['seg_map_path']))
        seen |= set(np.unique(labels).tolist())
        reduced = torch.from_numpy(labels.astype(np.int64) - 1)  # 0 -> -1
        reduced[reduced < 0] = 255
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=reduced[None])
        sample.pred_sem_seg = PixelData(data=reduced[None])
        metric.process({}, [sample.to_dict()])
    assert seen <= set(TOY_ADE20K_LABELS) and len(seen) >= 2
    assert metric.evaluate(len(dataset))['mIoU'] == pytest.approx(100.0)
