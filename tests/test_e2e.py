"""Short end-to-end runs of every registered family's three task configs
(RetinaNet, Mask R-CNN, Semantic FPN) on the toy data: tools/train.py,
then tools/test.py on the checkpoint it wrote, ending with the real metric
(COCO through pycocotools, mIoU through mmseg); and tools/test.py --deploy
on the segmentation checkpoint, which must give the same mIoU.

Each family runs the configs of its smallest arch (fewest published
GMACs), found as ``configs/<family_name>/<kind>_*-<arch>_*.py``, so a new
family is covered as soon as it is registered and has its configs.
"""
import glob
import os.path as osp

import pytest

from conftest import (ROOT, metric_values, run_tool, toy_config,
                      train_then_test)
from mixer_backbones.models import families

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

KINDS = {
    'retinanet': [r'coco/bbox_mAP:'],
    'mask-rcnn': [r'coco/bbox_mAP:', r'coco/segm_mAP:'],
    'fpn': [r'mIoU:'],
}

# ConvMixer-1024/20 at its real width costs about 1 s per forward-backward
# of two 64x64 crops on two CPU cores, which would push the detection runs
# past a minute: it runs at width 32 with the arch's own depth 20, kernel 9
# and patch 14, so the configs' block indices, pyramid and necks apply
# unchanged (at the toy sizes the stride-14 grid is 11x9 and 4x4, and
# every pyramid level keeps at least one pixel). ``_delete_``: the
# configs' ``arch`` is a string, which a dict cannot be merged into.
BACKBONE_OVERRIDES = {
    'convmixer':
    ", arch=dict(_delete_=True, dim=32, depth=20, kernel_size=9, "
    "patch_size=14, act='gelu')",
}


def family_config(name, kind):
    arch = families()[name].smallest_arch().replace('_', '-')
    found = glob.glob(osp.join(ROOT, f'configs/{name}/{kind}_*-{arch}_*.py'))
    assert len(found) == 1, (name, kind, arch, found)
    return osp.relpath(found[0], ROOT)


CASES = [(name, kind) for name in sorted(families()) for kind in KINDS]


@pytest.mark.parametrize(
    'family, kind', CASES, ids=[f'{f}-{k}' for f, k in CASES])
def test_config_trains_and_evaluates(family, kind, toy_coco, toy_ade20k,
                                     tmp_path):
    data = toy_ade20k if kind == 'fpn' else toy_coco
    config = toy_config(
        family_config(family, kind),
        data,
        tmp_path,
        backbone=BACKBONE_OVERRIDES.get(family, ''))
    work_dir = str(tmp_path / 'work')
    found = train_then_test(config, work_dir, KINDS[kind])
    top = 100.0 if kind == 'fpn' else 1.0
    assert all(0.0 <= v <= top for values in found.values() for v in values)
    if kind != 'fpn':
        return
    # The inference form (switch_to_deploy, and the CPU module's
    # forwards on a CPU): the same metric.
    result = run_tool('tools/test.py', config, f'{work_dir}/iter_2.pth',
                      '--work-dir', work_dir, '--deploy')
    assert 'evaluating with the inference form' in result.stdout
    deployed = metric_values(result.stdout, r'mIoU:')
    assert deployed and abs(deployed[-1] - found['mIoU:'][-1]) <= 0.05
