"""mmdet's and mmseg's own tools/train.py and tools/test.py run our configs
unchanged (the configs' custom_imports register the backbones), and load
the checkpoints that training writes under torch >= 2.6."""
import os
import os.path as osp
import re

import pytest

from conftest import metric_values, run_tool, toy_config

pytestmark = pytest.mark.e2e


def host_tool(host, name):
    package = pytest.importorskip(host)
    path = osp.join(osp.dirname(package.__file__), '.mim', 'tools', name)
    if not osp.exists(path):
        pytest.skip(f'{host} ships no {name}')
    return path


@pytest.mark.parametrize('host, config, data, metric', [
    ('mmdet', 'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
     'toy_coco', r'coco/bbox_mAP:'),
    ('mmseg',
     'configs/poolformer/fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py',
     'toy_ade20k', r'mIoU:'),
])
def test_host_tools_train_and_test(host, config, data, metric, tmp_path,
                                   request):
    path = toy_config(config, request.getfixturevalue(data), tmp_path)
    work_dir = str(tmp_path / 'work')
    run_tool(host_tool(host, 'train.py'), path, '--work-dir', work_dir)
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.exists(checkpoint), os.listdir(work_dir)
    result = run_tool(
        host_tool(host, 'test.py'), path, checkpoint, '--work-dir', work_dir)
    assert metric_values(result.stdout, metric)
    assert not re.search('Weights only load failed', result.stdout)
