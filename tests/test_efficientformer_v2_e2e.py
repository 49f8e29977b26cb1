"""Short end-to-end runs of the EfficientFormerV2 task configs (S0) on the
toy data: tools/train.py, then tools/test.py on the checkpoint it wrote,
ending with the real metric (COCO through pycocotools, mIoU through
mmseg), and the deploy form on the segmentation checkpoint."""
import pytest

from conftest import metric_values, run_tool, toy_config, train_then_test

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')


@pytest.mark.parametrize('config, metrics', [
    ('configs/efficientformer_v2/'
     'retinanet_efficientformerv2-s0_fpn_1x_coco.py', [r'coco/bbox_mAP:']),
    ('configs/efficientformer_v2/'
     'mask-rcnn_efficientformerv2-s0_fpn_1x_coco.py',
     [r'coco/bbox_mAP:', r'coco/segm_mAP:']),
])
def test_detection_config_trains_and_evaluates(config, metrics, toy_coco,
                                               tmp_path):
    path = toy_config(config, toy_coco, tmp_path)
    found = train_then_test(path, str(tmp_path / 'work'), metrics)
    assert all(0.0 <= v <= 1.0 for values in found.values() for v in values)


def test_segmentation_config_trains_and_evaluates(toy_ade20k, tmp_path):
    path = toy_config(
        'configs/efficientformer_v2/'
        'fpn_efficientformerv2-s0_8xb4-40k_ade20k-512x512.py', toy_ade20k,
        tmp_path)
    work_dir = str(tmp_path / 'work')
    found = train_then_test(path, work_dir, [r'mIoU:'])
    assert all(0.0 <= v <= 100.0 for v in found['mIoU:'])
    result = run_tool('tools/test.py', path, f'{work_dir}/iter_2.pth',
                      '--work-dir', work_dir, '--deploy')
    assert 'evaluating with the inference form' in result.stdout
    deployed = metric_values(result.stdout, r'mIoU:')
    assert deployed and abs(deployed[-1] - found['mIoU:'][-1]) <= 0.05
