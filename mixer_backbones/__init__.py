"""PoolFormer, EfficientFormer and ConvMixer dense-prediction backbones for
the OpenMMLab 2.x stack; importing the package needs neither mmdet nor
mmseg."""
from .checkpoint import register_safe_globals
from .registry import MODELS
from .version import __version__

register_safe_globals()

from .models import (BaseDenseBackbone, ConvMixer, EfficientFormer,  # noqa
                     PoolFormer)

__all__ = [
    'MODELS', '__version__', 'BaseDenseBackbone', 'ConvMixer',
    'EfficientFormer', 'PoolFormer'
]
