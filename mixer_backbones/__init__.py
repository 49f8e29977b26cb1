"""PoolFormer, EfficientFormer and ConvMixer dense-prediction backbones for
the OpenMMLab 2.x stack; importing the package needs neither mmdet nor
mmseg."""
import atexit

from .checkpoint import register_safe_globals
from .engine import shutdown_distributed
from .hooks import (DeployBackboneHook, NeckChannelsCheckHook,
                    ThroughputHook, check_neck_channels)
from .models import BaseDenseBackbone, ConvMixer, EfficientFormer, PoolFormer
from .registry import HOOKS, MODELS
from .version import __version__

# mmengine's own checkpoints load again under torch >= 2.6 (weights_only).
register_safe_globals()
# A process group left to interpreter teardown can abort a finished gloo
# run; leave it at exit, also under mmdet's and mmseg's own tools.
atexit.register(shutdown_distributed)

__all__ = [
    'HOOKS', 'MODELS', '__version__', 'BaseDenseBackbone', 'ConvMixer',
    'DeployBackboneHook', 'EfficientFormer', 'NeckChannelsCheckHook',
    'PoolFormer', 'ThroughputHook', 'check_neck_channels'
]
