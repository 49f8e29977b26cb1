"""The backbones, registered in ``mixer_backbones.registry.MODELS``."""
from .base import BaseDenseBackbone
from .convmixer import ConvMixer
from .efficientformer import EfficientFormer
from .poolformer import PoolFormer

__all__ = ['BaseDenseBackbone', 'ConvMixer', 'EfficientFormer', 'PoolFormer']
