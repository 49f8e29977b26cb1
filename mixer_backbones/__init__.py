"""PoolFormer, EfficientFormer and ConvMixer dense-prediction backbones for
the OpenMMLab 2.x stack; importing the package needs neither mmdet nor
mmseg. Importing it also applies :mod:`mixer_backbones.compat` (safe
checkpoint loading under torch >= 2.6, process-group clean-up at exit)."""
from . import compat
from .hooks import (DeployBackboneHook, NeckChannelsCheckHook,
                    ThroughputHook, check_neck_channels)
from .models import (BaseDenseBackbone, ConvMixer, EfficientFormer,
                     PoolFormer, families)
from .models import EfficientFormerV2
from .registry import HOOKS, MODELS
from .version import __version__

compat.apply()

__all__ = [
    'HOOKS', 'MODELS', '__version__', 'BaseDenseBackbone', 'ConvMixer',
    'DeployBackboneHook', 'EfficientFormer', 'NeckChannelsCheckHook',
    'PoolFormer', 'ThroughputHook', 'check_neck_channels', 'families'
]
__all__ += ['EfficientFormerV2']
