"""Placeholder: being written."""
from ..registry import MODELS
from .base import BaseDenseBackbone


@MODELS.register_module()
class ConvMixer(BaseDenseBackbone):
    pass
