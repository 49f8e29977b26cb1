"""OpenMMLab's norm_cfg and act_cfg in the constructors: SyncBN or a
frozen BatchNorm chosen per backbone in a config, the state dict
unchanged."""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mixer_backbones import MODELS, ConvMixer, EfficientFormer, PoolFormer
from mixer_backbones.models.layers import build_norm


@pytest.mark.parametrize('family', [EfficientFormer, ConvMixer])
def test_sync_bn_from_a_config_keeps_the_layout(family):
    default = family(family.tiny_arch)
    synced = MODELS.build(
        dict(
            type=f'mixer_backbones.{family.__name__}',
            arch=family.tiny_arch,
            norm_cfg=dict(type='SyncBN')))
    norms = [m for m in synced.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert len(norms) == sum(
        isinstance(m, _BatchNorm) for m in default.modules())
    assert synced.state_dict().keys() == default.state_dict().keys()


@pytest.mark.parametrize('family', [EfficientFormer, ConvMixer])
def test_frozen_batchnorm(family):
    model = family(
        family.tiny_arch,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms
    assert not any(p.requires_grad for m in norms for p in m.parameters())
    assert not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))


def test_act_cfg_is_used():
    relu = PoolFormer(PoolFormer.tiny_arch, act_cfg=dict(type='ReLU'))
    assert isinstance(relu.stages[0].blocks[0].mlp.act, nn.ReLU)
    gelu = ConvMixer(ConvMixer.tiny_arch)
    assert isinstance(gelu.blocks[0].channel_mixer.act_norm.act, nn.GELU)
    relu = ConvMixer(ConvMixer.tiny_arch, act_cfg=dict(type='ReLU'))
    assert isinstance(relu.blocks[0].channel_mixer.act_norm.act, nn.ReLU)


def test_unknown_norm_type_is_named():
    with pytest.raises(ValueError, match="unknown norm type 'NoSuchNorm'"):
        build_norm(dict(type='NoSuchNorm'), 8)
    with pytest.raises(TypeError, match='norm_cfg must be a dict'):
        build_norm('BN', 8)
