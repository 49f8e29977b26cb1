"""PoolFormer, EfficientFormer (V1 and V2), ConvMixer and the MetaFormer
baselines (IdentityFormer, PoolFormerV2, ConvFormer, CAFormer) as
dense-prediction backbones for the OpenMMLab 2.x stack; importing the
package needs neither mmdet nor mmseg. Importing it also applies
:mod:`mixer_backbones.compat` (safe checkpoint loading under torch >= 2.6,
process-group clean-up at exit)."""
from . import compat
from .hooks import (DeployBackboneHook, NeckChannelsCheckHook,
                    ThroughputHook, check_neck_channels)
from .models import (BaseDenseBackbone, CAFormer, ConvFormer, ConvMixer,
                     EfficientFormer, EfficientFormerV2, IdentityFormer,
                     PoolFormer, PoolFormerV2, families)
from .registry import HOOKS, MODELS
from .version import __version__

compat.apply()

__all__ = [
    'HOOKS', 'MODELS', '__version__', 'BaseDenseBackbone', 'CAFormer',
    'ConvFormer', 'ConvMixer', 'DeployBackboneHook', 'EfficientFormer',
    'EfficientFormerV2', 'IdentityFormer', 'NeckChannelsCheckHook',
    'PoolFormer', 'PoolFormerV2', 'ThroughputHook', 'check_neck_channels',
    'families'
]
