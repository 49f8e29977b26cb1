"""Short end-to-end runs of the ConvMixer task configs on the toy data:
tools/train.py, then tools/test.py on the checkpoint it wrote, ending with
the real metric (COCO through pycocotools, mIoU through mmseg).

The configs are those of the smallest arch, 1024_20, run with a narrow
version of it (``TINY``: width 32 instead of 1024, same depth 20, kernel 9,
patch 14 and GELU, so the configs' own block indices, pyramid and necks
apply unchanged): on two shared CPU cores the real width costs about 1 s
per forward-backward of two 64x64 crops and several at 160x128, which
would push the detection runs past a minute. At the toy sizes (160x128
detection images, 64x64 segmentation crops) the stride-14 grid is 11x9 and
4x4, and every pyramid level still has at least one pixel."""
import pytest

from conftest import toy_config, train_then_test

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

# ``_delete_``: the configs' ``arch`` is a string, which a dict cannot be
# merged into.
TINY = (", arch=dict(_delete_=True, dim=32, depth=20, kernel_size=9, "
        "patch_size=14, act='gelu')")


@pytest.mark.parametrize('config, metrics', [
    ('configs/convmixer/retinanet_convmixer-1024-20_fpn_1x_coco.py',
     [r'coco/bbox_mAP:']),
    ('configs/convmixer/mask-rcnn_convmixer-1024-20_fpn_1x_coco.py',
     [r'coco/bbox_mAP:', r'coco/segm_mAP:']),
])
def test_detection_config_trains_and_evaluates(config, metrics, toy_coco,
                                               tmp_path):
    path = toy_config(config, toy_coco, tmp_path, backbone=TINY)
    found = train_then_test(path, str(tmp_path / 'work'), metrics)
    assert all(0.0 <= v <= 1.0 for values in found.values() for v in values)


def test_segmentation_config_trains_and_evaluates(toy_ade20k, tmp_path):
    path = toy_config(
        'configs/convmixer/fpn_convmixer-1024-20_8xb4-40k_ade20k-512x512.py',
        toy_ade20k, tmp_path, backbone=TINY)
    found = train_then_test(path, str(tmp_path / 'work'), [r'mIoU:'])
    assert all(0.0 <= v <= 100.0 for v in found['mIoU:'])
