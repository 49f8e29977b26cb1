"""A training run killed with SIGKILL and restarted with --resume ends
with the same weights as an uninterrupted run with the same seed, for
epoch- and iteration-based loops, with or without dataloader workers."""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_tool, toy_config

pytestmark = pytest.mark.e2e

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


def kill_after_checkpoint(config, work_dir, name, *options):
    """Train ``config`` in ``work_dir`` and SIGKILL the run as soon as
    checkpoint ``name`` is written completely."""
    process = subprocess.Popen(
        [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
         *options],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        reached = wait_for_checkpoint(process, work_dir, name)
        assert reached, f'the run ended before writing {name}'
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


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
    kill_after_checkpoint(config, interrupted, 'iter_4.pth', *options)
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


# Exact resume of the shipped configs' loops: epoch-based (every COCO
# config) and iteration-based (every ADE20K config), with the data loaded
# in the main process or by workers, persistent or not.
RETINANET = 'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py'
FPN = 'configs/poolformer/fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py'
# A small backbone and head keep the matrix fast; the loop, data pipeline,
# sampler and hooks are the shipped config's.
_TINY_RETINANET = """
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=[1, 1, 1, 1], widths=[16, 32, 48,
                                                             64])),
    neck=dict(in_channels=[32, 48, 64], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))
"""
_EPOCHS = """
_base_ = '{base}'
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop', max_epochs={epochs},
    val_interval=1)
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1))
log_processor = dict(by_epoch=True)
train_dataloader = dict(
    num_workers={workers}, persistent_workers={persistent})
"""
_LOADER = """
_base_ = '{base}'
default_hooks = dict(checkpoint=dict(interval=2))
train_dataloader = dict(
    num_workers={workers}, persistent_workers={persistent})
"""


def derived(tmp_path, base, template, name, **fields):
    path = tmp_path / f'{name}.py'
    path.write_text(template.format(base=base, **fields))
    return str(path)


def weights(path):
    return torch.load(path, weights_only=True)['state_dict']


def assert_same_weights(expected_path, actual_path):
    expected, actual = weights(expected_path), weights(actual_path)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(
            actual[key], value, rtol=1e-5, atol=1e-6, msg=key)


def resume_copy(config, straight, tmp_path, checkpoint, name):
    """Resume, in a new work dir, from a checkpoint copied out of the
    uninterrupted run (what a run killed right after writing it leaves)."""
    work_dir = tmp_path / name
    work_dir.mkdir()
    shutil.copy(osp.join(straight, checkpoint), work_dir)
    result = run_tool('tools/train.py', config, '--work-dir', work_dir,
                      '--resume', work_dir / checkpoint)
    return str(work_dir), result.stdout


@pytest.mark.parametrize('workers,persistent', [(0, False), (2, False),
                                                (2, True)])
def test_epoch_based_resume_is_exact(toy_coco, tmp_path, workers,
                                     persistent):
    base = toy_config(RETINANET, toy_coco, tmp_path)
    config = derived(
        tmp_path,
        base,
        _EPOCHS,
        'epochs',
        epochs=3,
        workers=workers,
        persistent=persistent)
    with open(config, 'a') as f:
        f.write(_TINY_RETINANET)
    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', config, '--work-dir', straight)
    resumed, log = resume_copy(config, straight, tmp_path, 'epoch_1.pth',
                               'resumed')
    assert_same_weights(
        osp.join(straight, 'epoch_3.pth'), osp.join(resumed, 'epoch_3.pth'))
    assert 'Random states restored from the checkpoint' in log


@pytest.mark.parametrize('workers', [0, 2])
def test_iteration_based_resume_is_exact(toy_ade20k, tmp_path, workers):
    """The shipped Semantic FPN config (dropout in its head draws from
    torch's generator every iteration)."""
    base = toy_config(FPN, toy_ade20k, tmp_path, iters=6)
    config = derived(
        tmp_path,
        base,
        _LOADER,
        'loader',
        workers=workers,
        persistent=workers > 0)
    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', config, '--work-dir', straight)
    resumed, log = resume_copy(config, straight, tmp_path, 'iter_2.pth',
                               'resumed')
    assert_same_weights(
        osp.join(straight, 'iter_6.pth'), osp.join(resumed, 'iter_6.pth'))
    assert 'Random states restored from the checkpoint' in log


def test_killed_epoch_based_run_with_workers_resumes_exactly(
        toy_coco, tmp_path):
    """The shipped RetinaNet config, epoch-based, two persistent workers:
    SIGKILL after the first epoch's checkpoint, --resume (which also takes
    over the killed run's work-dir lock), the same final weights."""
    base = toy_config(RETINANET, toy_coco, tmp_path)
    config = derived(
        tmp_path,
        base,
        _EPOCHS,
        'epochs',
        epochs=2,
        workers=2,
        persistent=True)
    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', config, '--work-dir', straight)

    interrupted = str(tmp_path / 'interrupted')
    kill_after_checkpoint(config, interrupted, 'epoch_1.pth')
    assert not osp.exists(osp.join(interrupted, 'epoch_2.pth'))
    assert osp.exists(osp.join(interrupted, 'train.lock'))

    result = run_tool('tools/train.py', config, '--work-dir', interrupted,
                      '--resume')
    assert_same_weights(
        osp.join(straight, 'epoch_2.pth'),
        osp.join(interrupted, 'epoch_2.pth'))
    assert 'taking over the stale lock' in result.stdout
    assert 'Random states restored from the checkpoint' in result.stdout
    assert not osp.exists(osp.join(interrupted, 'train.lock'))
