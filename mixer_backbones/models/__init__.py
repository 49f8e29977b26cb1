"""The backbones, registered in ``mixer_backbones.registry.MODELS``."""
from .base import BaseDenseBackbone
from .convmixer import ConvMixer
from .efficientformer import EfficientFormer
from .poolformer import PoolFormer

# The families by the names the command-line tools take.
FAMILIES = {
    'poolformer': PoolFormer,
    'efficientformer': EfficientFormer,
    'convmixer': ConvMixer,
}

__all__ = [
    'BaseDenseBackbone', 'ConvMixer', 'EfficientFormer', 'FAMILIES',
    'PoolFormer'
]
