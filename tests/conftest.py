"""Shared fixtures: the toy datasets and short end-to-end runs of real
configs through ``tools/train.py`` and ``tools/test.py``."""
import contextlib
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory):
    from mixer_backbones.toy_data import make_toy_coco
    return make_toy_coco(
        str(tmp_path_factory.mktemp('toy') / 'coco'),
        num_train=8,
        num_val=4,
        image_size=(160, 128),
        seed=0)


@pytest.fixture(scope='session')
def toy_ade20k(tmp_path_factory):
    from mixer_backbones.toy_data import make_toy_ade20k
    return make_toy_ade20k(
        str(tmp_path_factory.mktemp('toy') / 'ade20k'),
        num_train=8,
        num_val=4,
        image_size=(128, 128),
        seed=0)


# Derived configs: the real config with only the data, the schedule and
# the number of classes changed, as a user adapting it would.
_SHORT_SCHEDULE = """
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters={iters},
    val_interval={iters})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={iters}))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""

_COCO = """
_base_ = '{base}'
data_root = '{data_root}/'
metainfo = dict(classes={classes!r})
model = dict(backbone=dict(init_cfg=None{backbone}){heads})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={masks}),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={masks}),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
_data = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline, **_data))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline, **_data))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='{val_ann}')
test_evaluator = val_evaluator
"""

_ADE20K = """
_base_ = '{base}'
data_root = '{data_root}/'
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None{backbone}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
"""


def toy_config(base, data, tmp_path, iters=2, backbone=''):
    """Write a config deriving from ``base`` (a path under configs/) that
    trains ``iters`` iterations on the toy data ``data``.

    Args:
        backbone (str): Extra backbone settings, e.g. ``", arch='l1'"``.
    """
    base_path = osp.join(ROOT, base)
    name = osp.basename(base)
    if name.startswith('fpn_'):
        text = _ADE20K.format(
            base=base_path, data_root=data['root'], backbone=backbone)
    else:
        from mixer_backbones.toy_data import TOY_COCO_CLASSES
        num = len(TOY_COCO_CLASSES)
        masks = name.startswith('mask-rcnn')
        # After a few iterations RetinaNet's scores still sit near its
        # prior (0.01), below the default threshold; keep every detection
        # so that the COCO evaluation always runs.
        heads = (f', roi_head=dict(bbox_head=dict(num_classes={num}), '
                 f'mask_head=dict(num_classes={num}))' if masks else
                 f', bbox_head=dict(num_classes={num}), '
                 f'test_cfg=dict(score_thr=0.0)')
        text = _COCO.format(
            base=base_path,
            data_root=data['root'],
            classes=TOY_COCO_CLASSES,
            backbone=backbone,
            heads=heads,
            masks=masks,
            val_ann=data['val_ann'])
    path = tmp_path / f'toy_{name}'
    path.write_text(text + _SHORT_SCHEDULE.format(iters=iters))
    return str(path)


def run_tool(*args,
             env=None,
             timeout=900,
             interpreter=None,
             expect_failure=False):
    """Run ``python <args>`` (or ``interpreter <args>``) from the
    repository root; return the completed process (stdout and stderr
    merged), failing with its output when it fails (or, with
    ``expect_failure``, when it succeeds)."""
    command = (interpreter or [sys.executable]) + [str(a) for a in args]
    merged_env = dict(os.environ, **(env or {}))
    merged_env.setdefault('OMP_NUM_THREADS', '2')
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=merged_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    if expect_failure:
        assert result.returncode != 0, f'{" ".join(command)} succeeded'
    elif result.returncode != 0:
        tail = '\n'.join(result.stdout.splitlines()[-60:])
        pytest.fail(f'{" ".join(command)} exited with {result.returncode}:'
                    f'\n{tail}')
    return result


def metric_values(output, pattern):
    """All float values printed after ``pattern`` (a regex) in ``output``."""
    return [float(v) for v in re.findall(pattern + r'\s*([0-9.]+)', output)]


def train_then_test(config, work_dir, metric_patterns):
    """``tools/train.py`` then ``tools/test.py`` on the last checkpoint;
    returns ``{pattern: [values printed]}``, failing if a metric is not
    printed."""
    train = run_tool('tools/train.py', config, '--work-dir', work_dir)
    assert_progress_logged(train.stdout)
    checkpoints = sorted(
        f for f in os.listdir(work_dir) if re.match(r'iter_\d+\.pth$', f))
    assert checkpoints, f'no checkpoint written in {work_dir}'
    result = run_tool('tools/test.py', config,
                      osp.join(work_dir, checkpoints[-1]), '--work-dir',
                      work_dir)
    found = {p: metric_values(result.stdout, p) for p in metric_patterns}
    missing = [p for p, values in found.items() if not values]
    assert not missing, (f'{missing} not in the test output:\n' +
                         textwrap.indent(result.stdout[-3000:], '  '))
    return found


def assert_progress_logged(log):
    """The training log shows throughput and, without GPUs, memory
    (:class:`mixer_backbones.ThroughputHook`)."""
    assert metric_values(log, r'img_per_s:'), 'no img_per_s in the log'
    if not torch_cuda_available():
        assert metric_values(log, r'cpu_memory:'), 'no cpu_memory in the log'


def torch_cuda_available():
    import torch
    return torch.cuda.is_available()


def deployed(model, x, channels_last):
    """``model`` after ``switch_to_deploy()`` and the CPU fast paths
    (``mixer_backbones.ops.cpu.optimize``), and ``x``, both in
    channels-last layout when asked."""
    from mixer_backbones.ops import cpu
    cpu.optimize(model.switch_to_deploy())
    if channels_last:
        model = model.to(memory_format=torch_channels_last())
        x = x.contiguous(memory_format=torch_channels_last())
    return model, x


def torch_channels_last():
    import torch
    return torch.channels_last


def assert_close_to_scale(actual, expected, tol=1e-5):
    """``max|actual - expected| <= tol * max|expected|``: float rounding
    accumulated through a deep network, measured against the size of the
    values (elementwise relative tolerance fails near zero crossings)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= tol * scale, (
        f'max abs error {error:.3g} exceeds {tol:g} x max |value| {scale:.3g}')


@contextlib.contextmanager
def counting_fused_convs():
    """Count the convolutions run through oneDNN's fused path (those that
    fetch ``mixer_backbones.ops.cpu._private_ops``) inside the block."""
    from mixer_backbones.ops import cpu
    calls = []
    real = cpu._private_ops

    def spy():
        calls.append(1)
        return real()

    with mock.patch.object(cpu, '_private_ops', spy):
        yield calls
