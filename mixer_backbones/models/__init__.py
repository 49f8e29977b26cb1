"""The backbones, registered in ``mixer_backbones.registry.MODELS``."""
from typing import Dict

from .base import BaseDenseBackbone
from .convmixer import ConvMixer
from .efficientformer import EfficientFormer
from .efficientformer_v2 import EfficientFormerV2
from .metaformer import MetaFormerBackbone, MetaFormerBlock, MetaFormerStage
from .metaformer_baselines import (CAFormer, ConvFormer, IdentityFormer,
                                   PoolFormerV2)
from .poolformer import PoolFormer


def families() -> Dict[str, type]:
    """Every registered family, by its name in the tools
    (``family_name``): the tools and tests iterate over these, so a family
    registered in ``mixer_backbones.registry.MODELS`` is picked up
    everywhere."""
    from ..registry import MODELS
    found = {}
    for cls in MODELS.module_dict.values():
        if (isinstance(cls, type) and issubclass(cls, BaseDenseBackbone)
                and cls.family_name):
            found[cls.family_name] = cls
    return found


# The built-in families, for imports that want a constant.
FAMILIES: Dict[str, type] = families()

__all__ = [
    'BaseDenseBackbone', 'CAFormer', 'ConvFormer', 'ConvMixer',
    'EfficientFormer', 'FAMILIES', 'IdentityFormer', 'MetaFormerBackbone',
    'MetaFormerBlock', 'MetaFormerStage', 'PoolFormer', 'PoolFormerV2',
    'families'
]
__all__ += ['EfficientFormerV2']
