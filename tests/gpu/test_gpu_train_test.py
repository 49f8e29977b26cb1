"""Short toy runs of a RetinaNet, a Mask R-CNN and a Semantic FPN config on
the GPU: ``tools/train.py --amp`` then ``tools/test.py``, one family each;
with two or more GPUs, ``tools/dist_train.sh CONFIG 2`` with NCCL, killed
with SIGKILL and resumed."""
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from gpu_common import requires_cuda

from conftest import ROOT, metric_values, run_tool, toy_config

pytestmark = requires_cuda
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

ITERS = 10


def train_amp_then_test(config, work_dir, metrics):
    train = run_tool('tools/train.py', config, '--work-dir', work_dir,
                     '--amp', timeout=300)
    losses = metric_values(train.stdout, r'\bloss:')
    assert len(losses) >= ITERS // 2, 'losses not logged every iteration'
    assert all(math.isfinite(v) for v in losses)
    # mmengine logs the GPU memory only when training on CUDA.
    assert metric_values(train.stdout, r'\bmemory:'), 'not trained on GPU'
    assert 'AmpOptimWrapper' in train.stdout  # in the config it logs
    result = run_tool('tools/test.py', config,
                      osp.join(work_dir, f'iter_{ITERS}.pth'), '--work-dir',
                      work_dir, timeout=300)
    found = {m: metric_values(result.stdout, m) for m in metrics}
    assert all(found.values()), f'metrics missing: {found}'
    return found


@pytest.mark.parametrize('config, metrics', [
    ('configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
     [r'coco/bbox_mAP:']),
    ('configs/efficientformer/mask-rcnn_efficientformer-l1_fpn_1x_coco.py',
     [r'coco/bbox_mAP:', r'coco/segm_mAP:']),
])
def test_detector_trains_with_amp_and_tests(config, metrics, toy_coco,
                                            tmp_path):
    path = toy_config(config, toy_coco, tmp_path, iters=ITERS)
    found = train_amp_then_test(path, str(tmp_path / 'work'), metrics)
    assert all(0.0 <= v <= 1.0 for values in found.values() for v in values)


def test_segmentor_trains_with_amp_and_tests(toy_ade20k, tmp_path):
    path = toy_config(
        'configs/convmixer/fpn_convmixer-768-32_8xb4-40k_ade20k-512x512.py',
        toy_ade20k, tmp_path, iters=ITERS)
    found = train_amp_then_test(path, str(tmp_path / 'work'), [r'mIoU:'])
    assert all(0.0 <= v <= 100.0 for v in found['mIoU:'])


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def _dist_train_command(config, work_dir, *options):
    return ['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
            work_dir, '--amp', *options]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs')
def test_two_gpu_training_killed_and_resumed(toy_coco, tmp_path):
    """``tools/dist_train.sh CONFIG 2`` with NCCL, SIGKILLed as soon as its
    first checkpoint is complete, then ``--resume``: the run goes on from
    that checkpoint's iteration to the end."""
    iters = 20
    config = toy_config(
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
        toy_coco, tmp_path, iters=iters)
    work_dir = str(tmp_path / 'work')
    options = [
        '--cfg-options', 'default_hooks.checkpoint.interval=2',
        'env_cfg.dist_cfg.timeout=120'
    ]
    env = dict(os.environ, PYTHON=sys.executable, PORT=_free_port(),
               OMP_NUM_THREADS='2', NCCL_DEBUG='WARN')
    log_path = tmp_path / 'first.log'
    killed_at = None
    with open(log_path, 'w') as log:
        # Its own session: SIGKILL reaches torchrun and both workers.
        process = subprocess.Popen(
            _dist_train_command(config, work_dir, *options), cwd=ROOT,
            env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        marker = osp.join(work_dir, 'last_checkpoint')
        deadline = time.time() + 240
        try:
            while time.time() < deadline and process.poll() is None:
                if osp.exists(marker):
                    found = re.search(r'iter_(\d+)\.pth$',
                                      open(marker).read().strip())
                    if found:
                        killed_at = int(found.group(1))
                        break
                time.sleep(0.05)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            process.wait()
    first = log_path.read_text()
    assert killed_at is not None, (
        f'no checkpoint within the deadline, or the run ended first:\n'
        f'{first[-3000:]}')
    assert killed_at < iters, f'killed only at iteration {killed_at}'
    assert 'Distributed training: True' in first
    assert re.search(r"backend.{0,5}nccl", first, re.I) or (
        "'nccl'" in first), 'not NCCL'
    assert not osp.exists(osp.join(work_dir, f'iter_{iters}.pth'))

    env['PORT'] = _free_port()
    result = run_tool('tools/dist_train.sh', config, '2', '--work-dir',
                      work_dir, '--amp', '--resume', *options, env=env,
                      interpreter=['bash'], timeout=300)
    # The newest complete checkpoint: the one seen, or one written in the
    # moment before the kill.
    resumed = re.search(r'resumed epoch: \d+, iter: (\d+)', result.stdout)
    assert resumed, 'no "resumed" line in the log'
    assert killed_at <= int(resumed.group(1)) < iters, resumed.group(0)
    assert osp.exists(osp.join(work_dir, f'iter_{iters}.pth'))
    losses = metric_values(result.stdout, r'\bloss:')
    assert losses and all(math.isfinite(v) for v in losses)
