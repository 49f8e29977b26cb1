"""Short end-to-end runs of the PoolFormer task configs on the toy data:
tools/train.py, then tools/test.py on the checkpoint it wrote, ending with
the real metric (COCO through pycocotools, mIoU through mmseg)."""
import pytest

from conftest import toy_config, train_then_test

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')


@pytest.mark.parametrize('config, metrics', [
    ('configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
     [r'coco/bbox_mAP:']),
    ('configs/poolformer/mask-rcnn_poolformer-s12_fpn_1x_coco.py',
     [r'coco/bbox_mAP:', r'coco/segm_mAP:']),
])
def test_detection_config_trains_and_evaluates(config, metrics, toy_coco,
                                               tmp_path):
    path = toy_config(config, toy_coco, tmp_path)
    found = train_then_test(path, str(tmp_path / 'work'), metrics)
    assert all(0.0 <= v <= 1.0 for values in found.values() for v in values)


def test_segmentation_config_trains_and_evaluates(toy_ade20k, tmp_path):
    path = toy_config(
        'configs/poolformer/fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py',
        toy_ade20k, tmp_path)
    found = train_then_test(path, str(tmp_path / 'work'), [r'mIoU:'])
    assert all(0.0 <= v <= 100.0 for v in found['mIoU:'])
