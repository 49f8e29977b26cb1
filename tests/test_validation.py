"""Arguments are checked where they are given, naming the value: a bool is
not an int, a string is not a list of indices, an arch dict holds only the
keys its family reads, rates and sizes are in range, inputs are floating
point. Every family runs the same checks."""
import pytest
import torch

from mixer_backbones import ConvMixer, EfficientFormer, PoolFormer
from mixer_backbones.models import FAMILIES as BY_NAME

FAMILIES = list(BY_NAME.values())
ids = [family.__name__ for family in FAMILIES]
TINY = {family: family.tiny_arch for family in FAMILIES}


def build(family, **kwargs):
    return family(kwargs.pop('arch', TINY[family]), **kwargs)


@pytest.mark.parametrize('family', FAMILIES, ids=ids)
@pytest.mark.parametrize(
    'name, value, error, message',
    [
        # bools are not ints: False would freeze the stem, True stage 0
        ('frozen_stages', False, TypeError, 'frozen_stages must be an int'),
        ('frozen_stages', True, TypeError, 'frozen_stages must be an int'),
        ('frozen_stages', 1.0, TypeError, r'frozen_stages.*1\.0 \(float\)'),
        ('out_indices', True, TypeError, r'out_indices.*True \(bool\)'),
        ('out_indices', (0, True), TypeError,
         r'out_indices must hold ints, got True \(bool\)'),
        # a string is not a sequence of indices
        ('out_indices', '0123', TypeError,
         r"out_indices must be an int or a sequence of ints, got '0123'"),
        ('out_indices', 1.0, TypeError, r'out_indices.*1\.0 \(float\)'),
        ('in_channels', True, TypeError, r'in_channels.*True \(bool\)'),
        ('in_channels', 3.0, TypeError, r'in_channels.*3\.0 \(float\)'),
        ('in_channels', 0, ValueError, r'in_channels=0 must be >= 1'),
        ('norm_eval', 1, TypeError, r'norm_eval must be True or False'),
        ('with_cp', 'yes', TypeError, r"with_cp must be True or False"),
        # drop_path_rate in [0, 1): 1 gives NaN, 1.5 fails in training,
        # a negative rate was silently ignored
        ('drop_path_rate', 1.0, ValueError, r'drop_path_rate=1\.0.*0 <='),
        ('drop_path_rate', 1.5, ValueError, r'drop_path_rate=1\.5'),
        ('drop_path_rate', -0.1, ValueError, r'drop_path_rate=-0\.1'),
        ('drop_path_rate', float('nan'), ValueError, r'drop_path_rate=nan'),
        ('drop_path_rate', True, TypeError, r'drop_path_rate.*\(bool\)'),
        ('drop_path_rate', '0.1', TypeError, r"drop_path_rate.*'0\.1'"),
    ])
def test_contract_arguments_are_checked(family, name, value, error,
                                        message):
    with pytest.raises(error, match=rf'{family.__name__}: {message}'):
        build(family, **{name: value})


@pytest.mark.parametrize('family', FAMILIES, ids=ids)
def test_valid_edge_values_still_build(family):
    # ConvMixer's default pyramid takes one block or one per level.
    raw = dict(pyramid=None) if family is ConvMixer else {}
    model = build(
        family,
        out_indices=[0, -1],
        frozen_stages=-1,
        drop_path_rate=0.99,
        in_channels=1,
        **raw)
    assert model.out_indices == (0, len(model.units) - 1)
    assert model.frozen_stages == -1
    build(family, out_indices=2, frozen_stages=0, drop_path_rate=0)


@pytest.mark.parametrize('family', [PoolFormer, EfficientFormer],
                         ids=['PoolFormer', 'EfficientFormer'])
@pytest.mark.parametrize('name, value, error, message', [
    ('pool_size', 0, ValueError, r'pool_size=0 must be >= 1'),
    ('pool_size', 2, ValueError, r'pool_size=2 must be odd'),
    ('pool_size', True, TypeError, r'pool_size.*True \(bool\)'),
    ('mlp_ratio', 0, ValueError, r'mlp_ratio=0 must be a finite number'),
    ('mlp_ratio', -1.0, ValueError, r'mlp_ratio=-1\.0'),
    ('layer_scale_init_value', True, TypeError,
     r'layer_scale_init_value must be a number or None.*\(bool\)'),
    ('layer_scale_init_value', float('inf'), ValueError,
     r'layer_scale_init_value=inf must be finite'),
])
def test_family_arguments_are_checked(family, name, value, error, message):
    with pytest.raises(error, match=rf'{family.__name__}: {message}'):
        build(family, **{name: value})


@pytest.mark.parametrize('family, key, valid', [
    (PoolFormer, 'mlp_ratio',
     r"\['depths', 'widths', 'layer_scale_init_value'\]"),
    (PoolFormer, 'pool_size', r"\['depths', 'widths'"),
    (EfficientFormer, 'heads',
     r"\['depths', 'widths', 'vit_num', 'layer_scale_init_value', "
     r"'num_heads', 'key_dim', 'attn_ratio'\]"),
    (ConvMixer, 'kernel',
     r"\['dim', 'depth', 'kernel_size', 'patch_size', 'act'\]"),
])
def test_unknown_arch_keys_are_refused_with_the_valid_ones(family, key, valid):
    arch = dict(TINY[family], **{key: 2})
    with pytest.raises(ValueError,
                       match=rf"unknown keys \['{key}'\]; valid keys: "
                       rf'{valid}'):
        family(arch)


@pytest.mark.parametrize('family, key, value, error, message', [
    (ConvMixer, 'kernel_size', 0, ValueError, r'kernel_size=0 must be >= 1'),
    (ConvMixer, 'patch_size', 0, ValueError, r'patch_size=0 must be >= 1'),
    (ConvMixer, 'patch_size', True, TypeError, r'patch_size.*\(bool\)'),
    (ConvMixer, 'dim', 16.0, TypeError, r'dim must be an int'),
    (ConvMixer, 'depth', 0, ValueError, r'depth=0 must be >= 1'),
    (PoolFormer, 'widths', [8, 0, 24, 32], ValueError,
     r'widths must hold ints >= 1, got 0'),
    (PoolFormer, 'depths', '1111', TypeError,
     r"depths must be a non-empty list of ints, got '1111'"),
    (PoolFormer, 'layer_scale_init_value', '1e-5', TypeError,
     "layer_scale_init_value must be a number or None, got '1e-5'"),
    (EfficientFormer, 'vit_num', -1, ValueError, r'vit_num=-1 must be >= 0'),
    (EfficientFormer, 'num_heads', 0, ValueError, r'num_heads=0'),
])
def test_arch_values_are_checked(family, key, value, error, message):
    arch = dict(TINY[family], **{key: value})
    with pytest.raises(error, match=rf'{family.__name__} arch: {message}'):
        family(arch)


@pytest.mark.parametrize('family', FAMILIES, ids=ids)
@pytest.mark.parametrize('dtype', [torch.uint8, torch.int64, torch.bool])
def test_non_floating_inputs_are_refused_by_name(family, dtype):
    model = build(family).eval()
    image = torch.randint(0, 2, (1, 3, 64, 64)).to(dtype)
    with pytest.raises(TypeError,
                       match=rf'{family.__name__} expects a floating-point '
                       rf'tensor .*normalised.*got {dtype}'):
        model(image)
    with torch.no_grad():
        outputs = model(image.float())
    assert len(outputs) == len(model.out_indices)
