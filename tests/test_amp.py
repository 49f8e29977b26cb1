"""Mixed precision keeps the residual stream in half precision.

On GPUs, autocast runs group and layer norms in fp32; a block that adds an
fp32 branch to its input promotes the whole residual stream to fp32 from
the first block on (timm's models do). Here the GPU policy is emulated on
the CPU by running those norms in fp32, and the stage outputs must stay in
bf16 and keep fewer bytes for backward than timm's on the same input.
"""
import contextlib
import sys
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT

from mixer_backbones import (CAFormer, ConvFormer, EfficientFormer, PoolFormer,
                             PoolFormerV2, families)

sys.path.insert(0, f'{ROOT}/tools')
from benchmark import saved_bytes  # noqa: E402

timm = pytest.importorskip('timm')

_GROUP_NORM, _LAYER_NORM = F.group_norm, F.layer_norm


def _in_fp32(norm):

    def run(x, *args, **kwargs):
        args = [a.float() if torch.is_tensor(a) else a for a in args]
        kwargs = {
            k: v.float() if torch.is_tensor(v) else v
            for k, v in kwargs.items()
        }
        with torch.autocast('cpu', enabled=False):
            return norm(x.float(), *args, **kwargs)

    return run


@contextlib.contextmanager
def gpu_autocast_policy():
    """bf16 autocast on the CPU with the norms in fp32, as on GPUs."""
    with mock.patch.object(F, 'group_norm', _in_fp32(_GROUP_NORM)), \
            mock.patch.object(F, 'layer_norm', _in_fp32(_LAYER_NORM)), \
            torch.autocast('cpu', dtype=torch.bfloat16):
        yield


def units(model, x):
    return model.unit_outputs(x, range(len(model.units)))


def backward(outs):
    sum(o.float().pow(2).mean() for o in outs).backward()


@pytest.mark.parametrize('family', families().values(),
                         ids=list(families()))
def test_residual_stream_stays_half(family):
    model = family(family.tiny_arch)
    x = torch.randn(2, 3, 97, 131)
    with gpu_autocast_policy():
        outs = units(model, x) + list(model(x))
    assert {o.dtype for o in outs} == {torch.bfloat16}


# EfficientFormer has norms (LayerNorms) only in its last stage, so the
# promotion it avoids is small there.
@pytest.mark.parametrize('family, arch, most', [
    (PoolFormer, 's12', 0.97),
    (EfficientFormer, 'l1', 0.99),
    # The baselines: StarReLU keeps only its input, norms fuse their
    # scale, no fp32 promotion (11-13% less).
    (PoolFormerV2, 's12', 0.92),
    (ConvFormer, 's18', 0.92),
    (CAFormer, 's18', 0.94),
])
def test_keeps_less_for_backward_than_timm(family, arch, most):
    ours = family(arch, out_indices=3)
    name = family.timm_names[arch]
    reference = timm.create_model(name)
    x = torch.randn(1, 3, 224, 224)

    def step(run):
        with gpu_autocast_policy():
            outs = run(x)
        backward(outs if isinstance(outs, list) else [outs])

    mine = saved_bytes(lambda: step(lambda t: units(ours, t)))
    theirs = saved_bytes(lambda: step(reference.forward_features))
    print(f'{name}: saved for backward under GPU-style bf16 autocast: '
          f'{mine / 2**20:.1f} MiB, timm {theirs / 2**20:.1f} MiB')
    assert mine < most * theirs
