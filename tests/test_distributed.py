"""Two CPU processes through tools/dist_train.sh and tools/dist_test.sh
(torchrun, gloo): the distributed path runs on a machine without GPUs."""
import os.path as osp
import socket
import sys

import pytest

from conftest import metric_values, run_tool, toy_config

pytest.importorskip('mmdet')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def test_two_process_train_and_test_on_cpu(toy_coco, tmp_path):
    config = toy_config(
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py', toy_coco,
        tmp_path)
    work_dir = str(tmp_path / 'work')
    env = dict(PYTHON=sys.executable, PORT=free_port(), OMP_NUM_THREADS='1')
    result = run_tool(
        'tools/dist_train.sh',
        config,
        '2',
        '--work-dir',
        work_dir,
        env=env,
        interpreter=['bash'])
    assert 'Distributed training: True' in result.stdout
    assert 'world_size: 2' in result.stdout or 'GPU number: 2' in (
        result.stdout)
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.exists(checkpoint)
    env['PORT'] = free_port()
    result = run_tool(
        'tools/dist_test.sh',
        config,
        checkpoint,
        '2',
        '--work-dir',
        work_dir,
        env=env,
        interpreter=['bash'])
    assert metric_values(result.stdout, r'coco/bbox_mAP:')
