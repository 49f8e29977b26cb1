"""PoolFormer, EfficientFormer and ConvMixer dense-prediction backbones for
the OpenMMLab 2.x stack; importing the package needs neither mmdet nor
mmseg."""
from .checkpoint import register_safe_globals
from .hooks import (DeployBackboneHook, NeckChannelsCheckHook,
                    ThroughputHook, check_neck_channels)
from .models import BaseDenseBackbone, ConvMixer, EfficientFormer, PoolFormer
from .registry import HOOKS, MODELS
from .version import __version__

# mmengine's own checkpoints load again under torch >= 2.6 (weights_only).
register_safe_globals()

__all__ = [
    'HOOKS', 'MODELS', '__version__', 'BaseDenseBackbone', 'ConvMixer',
    'DeployBackboneHook',
    'EfficientFormer', 'NeckChannelsCheckHook', 'PoolFormer',
    'ThroughputHook', 'check_neck_channels'
]
