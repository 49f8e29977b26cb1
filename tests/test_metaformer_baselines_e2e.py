"""Short end-to-end runs of each MetaFormer baseline family's task configs
(smallest arch) on the toy data: tools/train.py, then tools/test.py on the
checkpoint it wrote, ending with the real metric (COCO through
pycocotools, mIoU through mmseg)."""
import pytest

from conftest import toy_config, train_then_test

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

FAMILIES = {
    'identityformer': 's12',
    'poolformerv2': 's12',
    'convformer': 's18',
    'caformer': 's18',
}
KINDS = {
    'retinanet': ('retinanet_{}-{}_fpn_1x_coco.py', [r'coco/bbox_mAP:']),
    'mask-rcnn':
    ('mask-rcnn_{}-{}_fpn_1x_coco.py', [r'coco/bbox_mAP:', r'coco/segm_mAP:']),
    'fpn': ('fpn_{}-{}_8xb4-40k_ade20k-512x512.py', [r'mIoU:']),
}
CASES = [(family, kind) for family in FAMILIES for kind in KINDS]


@pytest.mark.parametrize(
    'family, kind', CASES, ids=[f'{f}-{k}' for f, k in CASES])
def test_config_trains_and_evaluates(family, kind, toy_coco, toy_ade20k,
                                     tmp_path):
    pattern, metrics = KINDS[kind]
    config = f'configs/{family}/' + pattern.format(family, FAMILIES[family])
    data = toy_ade20k if kind == 'fpn' else toy_coco
    found = train_then_test(
        toy_config(config, data, tmp_path), str(tmp_path / 'work'), metrics)
    top = 100.0 if kind == 'fpn' else 1.0
    assert all(0.0 <= v <= top for values in found.values() for v in values)
