"""PoolFormer, EfficientFormer and ConvMixer dense-prediction backbones."""
from .registry import MODELS
from .version import __version__

__all__ = ['MODELS', '__version__']
