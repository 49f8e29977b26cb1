"""What the GPU tests share: the marker that skips them without CUDA, and
our backbones next to timm's on the same weights.

The tests in this folder run only where torch sees a CUDA device (they are
collected and skipped everywhere else, in well under a second); run them
with ``bash tools/gpu_check.sh``, which also writes a report.
"""
import functools
import sys
from typing import Tuple

import pytest
import torch
import torch.nn as nn

from conftest import ROOT

from mixer_backbones.models import FAMILIES

sys.path.insert(0, f'{ROOT}/tools')
from benchmark import (  # noqa: E402,F401  (shared with the tests)
    raw_features, relative_difference, timm_features)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='no CUDA device (tests/gpu runs through tools/gpu_check.sh)')


def every_arch():
    """``(family, arch)`` for every arch of every registered family that
    timm implements (IdentityFormer has no timm model)."""
    return [(name, arch) for name, family in FAMILIES.items()
            for arch in family.arch_zoo if arch in family.timm_names]


def archs_without_timm():
    """``(family, arch)`` for the archs timm does not implement."""
    return [(name, arch) for name, family in FAMILIES.items()
            for arch in family.arch_zoo if arch not in family.timm_names]


@functools.lru_cache(maxsize=1)
def timm_pair(family_name: str, arch: str) -> Tuple[nn.Module, nn.Module]:
    """Ours and timm's model for ``arch`` on the GPU, ours carrying timm's
    weights through our converter.

    Layer scales are drawn in [0.1, 0.5] (timm initialises them near zero,
    which would hide every residual branch) and norm affines are perturbed,
    so that every weight shows in the outputs. Ours runs without output
    norms or ConvMixer's pyramid, like timm's ``forward_features``.
    """
    import timm
    family = FAMILIES[family_name]
    torch.manual_seed(0)
    reference = timm.create_model(family.timm_names[arch], pretrained=False)
    with torch.no_grad():
        for key, param in reference.named_parameters():
            if 'layer_scale' in key or key.endswith('gamma'):
                param.uniform_(0.1, 0.5)
            elif 'norm' in key:
                param.add_(torch.randn_like(param) * 0.1)
    ours = family(arch, **family.benchmark_kwargs)
    ours.load_converted(
        family.convert_checkpoint(reference.state_dict())[0], 'timm model')
    # BatchNorm keeps its running statistics (momentum 0), so that every
    # dtype's eval-mode comparison sees the same statistics in both models.
    for module in [*ours.modules(), *reference.modules()]:
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return ours.cuda(), reference.cuda()
