"""What adding a family takes (docs/adding_a_family.md): a class on the
shared pieces, registered; the contract, loading, the inference form, the
CPU fast paths and the tools' family queries come from the base classes.
The toy family here is an IdentityFormer-like MetaFormer (no token
mixing), registered only for these tests."""
import sys

import pytest
import torch
import torch.nn as nn

from conftest import ROOT, assert_close_to_scale
from mixer_backbones import MODELS, families
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.flops import classification_figures
from mixer_backbones.models import (MetaFormerBackbone, MetaFormerBlock,
                                    MetaFormerStage)
from mixer_backbones.models.layers import ConvMlp, build_norm
from mixer_backbones.models.metaformer import drop_path_rates
from mixer_backbones.models.validation import check_arguments
from mixer_backbones.ops import cpu


class ToyFormer(MetaFormerBackbone):
    """A MetaFormer whose token mixer is the identity."""
    family_name = 'toyformer'
    arch_zoo = {'t1': dict(depths=[1, 2, 1, 1], widths=[8, 16, 24, 32])}
    arch_keys = ('depths', 'widths')
    tiny_arch = arch_zoo['t1']
    min_input_size = 3

    def __init__(self,
                 arch='t1',
                 in_channels=3,
                 out_indices=(0, 1, 2, 3),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 drop_path_rate=0.,
                 norm_cfg=dict(type='GN', num_groups=1),
                 init_cfg=None):
        super().__init__(
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        check_arguments(type(self).__name__, drop_path_rate=drop_path_rate)
        settings = self.init_arch(arch)
        depths, widths = settings['depths'], settings['widths']
        self.stem = nn.Conv2d(in_channels, widths[0], 7, stride=4, padding=2)
        self.stages = nn.ModuleList()
        rates = drop_path_rates(depths, drop_path_rate)
        for i, width in enumerate(widths):
            downsample = None if i == 0 else nn.Conv2d(
                widths[i - 1], width, 3, stride=2, padding=1)
            self.stages.append(
                MetaFormerStage(downsample, [
                    MetaFormerBlock(
                        width,
                        token_mixer=nn.Identity(),
                        mlp=ConvMlp(width, 4 * width),
                        norm1=build_norm(norm_cfg, width),
                        norm2=build_norm(norm_cfg, width),
                        layer_scale_init_value=1e-5,
                        drop_path=rate) for rate in rates[i]
                ]))
        self.setup_outputs(widths)

    @classmethod
    def convert_checkpoint(cls, state_dict):
        if 'stem.weight' not in state_dict:
            raise CheckpointError('not a ToyFormer checkpoint')
        return dict(state_dict), 'mixer_backbones'


@pytest.fixture
def registered():
    MODELS.register_module(module=ToyFormer)
    try:
        yield
    finally:
        MODELS.module_dict.pop('ToyFormer')


def test_the_registry_and_the_tools_find_it(registered):
    assert families()['toyformer'] is ToyFormer
    model = MODELS.build(dict(type='mixer_backbones.ToyFormer'))
    shapes = [tuple(o.shape) for o in model(torch.rand(1, 3, 97, 131))]
    assert shapes == [(1, 8, 24, 33), (1, 16, 12, 17), (1, 24, 6, 9),
                      (1, 32, 3, 5)]
    figures = classification_figures(ToyFormer, 't1')
    assert figures['params'] > 0 and figures['macs'] > 0
    sys.path.insert(0, f'{ROOT}/tools')
    import get_flops
    row = get_flops.measure('toyformer', 't1', [(64, 96)])
    assert row['dense']['64x96']['gmacs'] > 0


def test_the_contract_comes_from_the_base_classes(tmp_path):
    model = ToyFormer(out_indices=(1, 3), frozen_stages=1).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert model.out_channels == [16, 32]
    with pytest.raises(ValueError, match='out of range'):
        ToyFormer(out_indices=(4, ))
    with pytest.raises(ValueError, match='drop_path_rate'):
        ToyFormer(drop_path_rate=1.0)
    # All-or-nothing loading through the family's converter.
    source = ToyFormer()
    path = str(tmp_path / 'toy.pth')
    torch.save(source.state_dict(), path)
    model = ToyFormer()
    model.load_pretrained(path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    torch.save({'stem.weight': torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match='nothing was loaded'):
        ToyFormer().load_pretrained(path)


def test_inference_form_and_cpu_paths():
    torch.manual_seed(0)
    model = ToyFormer().eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        cpu.optimize(model)
        actual = model(x)
    assert not any('layer_scale2' in k for k in model.state_dict())
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
