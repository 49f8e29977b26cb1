"""A training run killed with SIGKILL and restarted with --resume ends
with the same weights as an uninterrupted run with the same seed."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_tool, toy_config

pytest.importorskip('mmdet')


def final_weights(work_dir, iters):
    checkpoint = torch.load(
        osp.join(work_dir, f'iter_{iters}.pth'), weights_only=True)
    assert checkpoint['meta']['iter'] == iters
    return checkpoint['state_dict']


def wait_for_checkpoint(process, work_dir, name, timeout=600):
    """Wait until mmengine has recorded ``name`` as its last checkpoint
    (written completely), or the process ends."""
    marker = osp.join(work_dir, 'last_checkpoint')
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if osp.exists(marker) and open(marker).read().strip().endswith(name):
            return True
        time.sleep(0.1)
    return False


def test_killed_run_resumes_to_the_same_weights(toy_coco, tmp_path):
    iters = 6
    config = toy_config(
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
        toy_coco,
        tmp_path,
        iters=iters)
    # Checkpoint every 2 iterations (the derived config saves at the end).
    options = ['--cfg-options', 'default_hooks.checkpoint.interval=2']

    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', config, '--work-dir', straight, *options)

    interrupted = str(tmp_path / 'interrupted')
    process = subprocess.Popen([
        sys.executable, 'tools/train.py', config, '--work-dir', interrupted,
        *options
    ],
                               cwd=ROOT,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        reached = wait_for_checkpoint(process, interrupted, 'iter_4.pth')
        assert reached, 'the run ended before writing iter_4.pth'
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not osp.exists(osp.join(interrupted, f'iter_{iters}.pth'))

    result = run_tool('tools/train.py', config, '--work-dir', interrupted,
                      '--resume', *options)
    assert 'resumed' in result.stdout.lower()

    expected = final_weights(straight, iters)
    actual = final_weights(interrupted, iters)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(
            actual[key], value, rtol=1e-5, atol=1e-6, msg=key)
