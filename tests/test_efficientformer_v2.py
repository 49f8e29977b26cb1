"""EfficientFormerV2: equivalence with timm on the same weights from every
published layout, any input size (the stride-2 attention's upsampling
lands on the level's size), the resampled attention biases, the released
dense backbones reproduced from the authors' key and shape schema, the
deploy form and the constructor options.

The released-layout state dicts are built from
``tests/fixtures/manifests/efficientformer_v2.json`` (key names, shapes
and dtypes generated from the authors' model code by
``tests/fixtures/make_release_manifests.py``). :func:`original_dense` is
a plain re-implementation, over the release key names, of the authors'
dense forward (``detection/backbonev2.py``): every ``attention_biases_seg``
table expanded to its pair matrix and resized bicubically, as an image,
to the attention's size; it was checked once against the authors' code
(run with its OpenMMLab and timm imports stubbed), as was this package's
model loading the authors' classification and dense models.
"""
import functools
import itertools
import json
import math
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import ROOT, assert_close_to_scale
from mixer_backbones import MODELS, EfficientFormerV2
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.models.efficientformer_v2 import (DownsampleAttention,
                                                       TalkingHeadAttention)

timm = pytest.importorskip('timm')

ARCHS = ['s0', 's1', 's2', 'l']
WIDTHS = {
    's0': [32, 48, 96, 176],
    's1': [32, 48, 120, 224],
    's2': [32, 64, 144, 288],
    'l': [40, 80, 192, 384],
}
TINY = EfficientFormerV2.tiny_arch
MANIFEST = osp.join(
    osp.dirname(osp.abspath(__file__)), 'fixtures', 'manifests',
    'efficientformer_v2.json')
# Max relative errors vs timm, per (arch, layout), printed at the end.
ERRORS = {}


def ceil_sizes(height, width):
    return [(math.ceil(height / s), math.ceil(width / s))
            for s in (4, 8, 16, 32)]


def randomize(model, seed=0):
    """Non-trivial weights: layer scales near one, random BatchNorm
    statistics and affine parameters, random attention-bias tables."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            shape = tensor.shape
            if re.search(r'(gamma|layer_scale_?\d(\.weight)?)$', name):
                value = torch.rand(shape, generator=generator) + 0.5
            elif name.endswith('running_var'):
                value = torch.rand(shape, generator=generator) * 1.5 + 0.5
            elif 'attention_biases' in name:
                value = torch.randn(shape, generator=generator)
            elif name.endswith('weight') and tensor.dim() == 1:
                value = 1 + 0.2 * torch.randn(shape, generator=generator)
            else:
                value = 0.1 * torch.randn(shape, generator=generator)
            tensor.copy_(value)
    return model


@functools.lru_cache(maxsize=None)
def timm_reference(arch):
    """A randomised timm model's state dict and four stage outputs at
    224x224 (once per arch)."""
    model = timm.create_model(f'efficientformerv2_{arch}', pretrained=False)
    randomize(model.eval(), seed=ARCHS.index(arch))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    outs = []
    with torch.no_grad():
        y = model.stem(x)
        for stage in model.stages:
            y = stage(y)
            outs.append(y)
    return dict(model.state_dict()), x, outs


@functools.lru_cache(maxsize=None)
def manifest():
    with open(MANIFEST) as f:
        return json.load(f)['layouts']


def original_index(resolution, query_stride=1):
    """The original ``attention_bias_idxs``: offsets ``(|s*qy - ky|,
    |s*qx - kx|)`` numbered in the order they first appear."""
    keys = list(itertools.product(range(resolution), range(resolution)))
    queries = list(
        itertools.product(
            range(math.ceil(resolution / query_stride)),
            range(math.ceil(resolution / query_stride))))
    numbers, index = {}, []
    for q in queries:
        for k in keys:
            offset = (abs(q[0] * query_stride - k[0]),
                      abs(q[1] * query_stride - k[1]))
            index.append(numbers.setdefault(offset, len(numbers)))
    return torch.tensor(index).view(len(queries), len(keys))


def release_state(layout, fill):
    """A state dict with every key of a manifest layout: ``fill(name,
    shape)`` for the floats, the original index buffers for the
    ``*_idxs*`` keys (ones for the dense models' unused ImageNet index, as
    they write it)."""
    state = {}
    for name, shape, dtype in manifest()[layout]['keys']:
        if dtype == 'int64' and 'attention_bias_idxs' in name:
            if name.endswith('_seg') or layout.startswith('class'):
                rows, cols = shape
                side = round(cols**0.5)
                stride = 1 if rows == cols else 2
                value = original_index(side, stride)
            else:
                value = torch.ones(shape, dtype=torch.long)
        elif dtype == 'int64':
            value = torch.zeros(shape, dtype=torch.long)
        else:
            value = fill(name, shape)
        assert list(value.shape) == shape, name
        state[name] = value
    return state


def to_snap(timm_state, arch):
    """The timm weights under the original release's names: each key of
    the manifest takes the tensor our converter maps it to."""
    ours, _ = EfficientFormerV2.convert_checkpoint(timm_state)

    # Two keys that make the converter take the original layout, and
    # their names in ours.
    probe = {
        'patch_embed.0.weight': 'stem.conv1.weight',
        'network.0.0.mlp.mid.weight': 'stages.0.blocks.0.mlp.mid.weight'
    }

    def fill(name, shape):
        converted, _ = EfficientFormerV2.convert_checkpoint(
            dict(probe, **{name: torch.zeros(shape)}))
        key = probe.get(name) or (converted.keys() - set(probe.values()))
        return ours[key if name in probe else key.pop()].reshape(shape)

    return release_state(f'classification/{arch}', fill)


def stage_outputs(model, x):
    with torch.no_grad():
        return model.unit_outputs(x, range(4))


# ------------------------------------------------------------ shapes ----
@pytest.mark.parametrize('arch', ARCHS)
def test_arch_builds_with_pyramid_shapes(arch):
    model = EfficientFormerV2(arch).eval()
    assert model.out_channels == WIDTHS[arch]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 96, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (c, h, w) for c, (h, w) in zip(WIDTHS[arch], ceil_sizes(96, 64))
    ]


@pytest.mark.parametrize('size', [(512, 512),
                                  pytest.param((800, 1216),
                                               marks=pytest.mark.slow),
                                  (500, 701)])
def test_dense_sizes_with_expected_strides(size):
    model = EfficientFormerV2('s0').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == ceil_sizes(*size)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('size', [(208, 240), (33, 97), (65, 65)])
def test_stride_two_attention_lands_on_odd_grids(size):
    """Stage 2's grid is odd here (13x15, 3x7, 5x5): the half-size
    attention's output is resized to exactly that grid."""
    model = EfficientFormerV2(TINY).eval()
    attention = model.stages[2].blocks[-1].token_mixer
    assert attention.stride == 2
    x = torch.randn(1, 24, *ceil_sizes(*size)[2])
    with torch.no_grad():
        assert attention(x).shape == x.shape
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == ceil_sizes(*size)


def test_registry_out_indices_and_arguments():
    model = MODELS.build(
        dict(type='mixer_backbones.EfficientFormerV2', arch=TINY,
             out_indices=(-1, 1)))
    assert model.out_indices == (1, 3) and set(model.out_norms) == {'1', '3'}
    assert len(EfficientFormerV2(TINY, out_norm_cfg=None).out_norms) == 0
    with pytest.raises(ValueError, match="unknown arch 'm'"):
        EfficientFormerV2('m')
    with pytest.raises(ValueError, match='mlp_ratios'):
        EfficientFormerV2(dict(TINY, mlp_ratios=[[4]] * 4))
    with pytest.raises(ValueError, match='vit_num=3'):
        EfficientFormerV2(dict(TINY, vit_num=3))
    with pytest.raises(ValueError, match="bias_mode='dense' needs"):
        EfficientFormerV2(TINY, bias_mode='dense')
    with pytest.raises(ValueError, match="unknown bias_mode 'x'"):
        EfficientFormerV2(TINY, bias_mode='x')
    with pytest.raises(ValueError, match='drop_path_rate'):
        EfficientFormerV2(TINY, drop_path_rate=1.5)


def test_attention_blocks_and_downsampling_where_published():
    model = EfficientFormerV2('s1')
    kinds = [[type(b.token_mixer).__name__ for b in stage.blocks]
             for stage in model.stages]
    assert kinds[:2] == [['NoneType'] * 3] * 2
    assert kinds[2] == ['NoneType'] * 7 + ['TalkingHeadAttention'] * 2
    assert kinds[3] == ['NoneType'] * 4 + ['TalkingHeadAttention'] * 2
    assert {b.token_mixer.stride for b in model.stages[2].blocks[-2:]} == {2}
    assert isinstance(model.stages[3].downsample.attention,
                      DownsampleAttention)
    assert [b.mlp.fc1.out_channels for b in model.stages[3].blocks
            ] == [4 * 224, 4 * 224, 3 * 224, 3 * 224, 4 * 224, 4 * 224]


# -------------------------------------------------------- attention bias --
def test_bias_at_224_is_the_pretrained_table():
    attention = TalkingHeadAttention(16)
    down = DownsampleAttention(16, 24)
    with torch.no_grad():
        attention.attention_biases.normal_()
        down.attention_biases.normal_()
    assert torch.equal(
        attention.relative_bias(7, 7),
        attention.attention_biases[:, original_index(7)])
    assert torch.equal(
        down.relative_bias(14, 14),
        down.attention_biases[:, original_index(14, 2)])


def test_bias_is_resampled_to_the_grid_attended():
    down = DownsampleAttention(16, 24)
    with torch.no_grad():
        down.attention_biases.normal_()
    table = down.attention_biases.view(8, 14, 14)
    bias = down.relative_bias(32, 44)  # keys of a 512x701 input
    assert bias.shape == (8, 16 * 22, 32 * 44)
    # Query (0, 0) sees key (0, 0) at offset 0, key (31, 43) at the
    # largest offset: the table's corners.
    assert torch.allclose(bias[:, 0, 0], table[:, 0, 0])
    assert torch.allclose(bias[:, 0, -1], table[:, -1, -1], atol=1e-5)


def locality_tables(model, seed=0):
    """Give every attention a table like trained ones: the bias falls
    with the offset's length, at a rate per head (some heads local, some
    nearly global), plus a little noise; and talking heads near the
    identity (initialised near zero, they would hide every bias)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for attention in model._attentions().values():
            side = attention.resolution
            steps = torch.arange(side, dtype=torch.float)
            length = (steps[:, None]**2 + steps[None, :]**2).sqrt() / side
            slopes = torch.rand(attention.num_heads, 1, 1,
                                generator=generator) * 8
            noise = 0.1 * torch.randn(attention.num_heads, side, side,
                                      generator=generator)
            attention.bias_table.copy_((-slopes * length + noise).flatten(1))
            for name in ('talking_head1', 'talking_head2'):
                mix = getattr(attention, name, None)
                if mix is not None:
                    heads = attention.num_heads
                    mix.weight.copy_((torch.eye(heads) + 0.1 * torch.randn(
                        heads, heads, generator=generator)).view_as(
                            mix.weight))


@pytest.mark.parametrize('mode', ['bicubic', 'clamp'])
def test_pretrained_biases_matter_as_much_at_512_as_at_224(mode):
    """Zeroing the bias tables changes each attention's output by a
    similar relative amount at 512x512 as at 224x224: the pretrained
    biases stay in use at dense sizes (the authors' dense models drop
    them and start from zero)."""
    # Weights as initialised for training (random weights with layer
    # scales near one saturate every softmax deep in the network).
    torch.manual_seed(0)
    model = EfficientFormerV2('s0', bias_mode=mode)
    model.init_weights()
    locality_tables(model.eval())
    attentions = model._attentions()
    effects = {}
    for size in (224, 512):
        inputs = {}
        hooks = [
            module.register_forward_pre_hook(
                lambda m, args, name=name: inputs.setdefault(name, args[0]))
            for name, module in attentions.items()
        ]
        x = torch.randn(1, 3, size, size,
                        generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            model(x)
            for hook in hooks:
                hook.remove()
            effects[size] = []
            for name, attention in attentions.items():
                kept = attention(inputs[name])
                saved = attention.attention_biases.clone()
                attention.attention_biases.zero_()
                zeroed = attention(inputs[name])
                attention.attention_biases.copy_(saved)
                effects[size].append(
                    ((kept - zeroed).norm() / kept.norm()).item())
    print(f'\nbias zeroing, relative change of each attention output '
          f'({mode}): 224: {[round(e, 3) for e in effects[224]]}, '
          f'512: {[round(e, 3) for e in effects[512]]}')
    assert len(effects[224]) == 5
    for at_224, at_512 in zip(effects[224], effects[512]):
        assert at_224 > 0.05
        assert 0.3 < at_512 / at_224 < 3


def test_bias_cache_in_eval_and_gradients_in_training():
    model = EfficientFormerV2(TINY).eval()
    attention = model.stages[3].blocks[-1].token_mixer
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
        model(torch.randn(1, 3, 64, 64))
        assert len(attention._bias_cache) == 1
        model(torch.randn(1, 3, 96, 64))
    assert len(attention._bias_cache) == 2
    model.train()
    # Not a plain sum: the sum of a GroupNorm's output is constant.
    sum((o * torch.randn_like(o)).sum()
        for o in model(torch.randn(2, 3, 64, 96))).backward()
    assert attention.attention_biases.grad.abs().sum() > 0
    down = model.stages[3].downsample.attention
    assert down.attention_biases.grad.abs().sum() > 0


# ------------------------------------------------------------ weights ----
@pytest.mark.parametrize(
    'arch', ARCHS[:-1] + [pytest.param('l', marks=pytest.mark.slow)])
def test_every_layout_equals_timm_at_224(arch, tmp_path):
    """timm's weights, the same under the original release's names, and
    this package's own state dict give timm's four stage outputs (S0's
    through files with the releases' wrappers, the others in memory)."""
    timm_state, x, expected = timm_reference(arch)
    ours = None
    for layout in ('timm', 'snap-research', 'mixer_backbones'):
        checkpoint = {
            'timm': timm_state,
            'snap-research': {
                'model': to_snap(timm_state, arch)
            },
        }.get(layout) or ours.state_dict()
        model = EfficientFormerV2(arch).eval()
        if arch == 's0':
            path = str(tmp_path / f'{layout}.pth')
            torch.save(checkpoint, path)
            report = model.load_pretrained(path)
        else:
            state, found = EfficientFormerV2.convert_checkpoint(
                checkpoint.get('model', checkpoint))
            report = model.load_converted(state, layout=found)
        assert report['layout'] == layout
        assert all(k.startswith('out_norms.') for k in report['new'])
        assert report['loaded'] > 500
        outs = stage_outputs(model, x)
        errors = []
        for out, ref in zip(outs, expected):
            assert_close_to_scale(out, ref, tol=1e-5)
            errors.append((out - ref).abs().max().item() /
                          ref.abs().max().item())
        ERRORS[(arch, layout)] = max(errors)
        ours = ours or model


def test_converter_is_idempotent_and_refuses_other_layouts():
    timm_state, _, _ = timm_reference('s0')
    converted, layout = EfficientFormerV2.convert_checkpoint(timm_state)
    assert layout == 'timm'
    again, layout = EfficientFormerV2.convert_checkpoint(converted)
    assert layout == 'mixer_backbones' and again.keys() == converted.keys()
    assert all(again[k] is converted[k] for k in converted)
    snap, layout = EfficientFormerV2.convert_checkpoint(
        to_snap(timm_state, 's0'))
    assert layout == 'snap-research'
    assert snap.keys() == converted.keys()
    assert all(torch.equal(snap[k], converted[k]) for k in snap)
    with pytest.raises(CheckpointError, match='not an EfficientFormerV2'):
        EfficientFormerV2.convert_checkpoint({'conv.weight': torch.zeros(1)})
    bad = dict(to_snap(timm_state, 's0'))
    key = 'network.6.3.token_mixer.attention_bias_idxs'
    bad[key] = torch.zeros(49, 48, dtype=torch.long)
    with pytest.raises(CheckpointError, match='does not fit its table'):
        EfficientFormerV2.convert_checkpoint(bad)


def test_efficientformer_v1_and_v2_checkpoints_are_told_apart():
    from mixer_backbones import EfficientFormer
    from mixer_backbones.release import detect_family
    v2 = to_snap(timm_reference('s0')[0], 's0')
    v1 = {k: v for k, v in EfficientFormer('l1').state_dict().items()}
    with pytest.raises(CheckpointError, match='EfficientFormerV2 checkpoint'):
        EfficientFormer.convert_checkpoint(v2)
    with pytest.raises(CheckpointError, match='not an EfficientFormerV2'):
        EfficientFormerV2.convert_checkpoint(v1)
    assert detect_family(v2)[0] == 'efficientformer_v2'
    assert detect_family(v1)[0] == 'efficientformer'


def test_other_arch_is_refused_with_nothing_loaded(tmp_path):
    timm_state, _, _ = timm_reference('s0')
    model = EfficientFormerV2('s1')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = str(tmp_path / 's0.pth')
    torch.save(timm_state, path)
    with pytest.raises(CheckpointError, match='nothing was loaded'):
        model.load_pretrained(path)
    assert all(torch.equal(v, model.state_dict()[k])
               for k, v in before.items())


# ------------------------------------------------ released dense models --
def _conv_bn(x, s, conv, bn, stride=1, groups=1):
    weight = s[f'{conv}.weight']
    x = F.conv2d(x, weight, s[f'{conv}.bias'], stride,
                 weight.shape[-1] // 2, 1, groups)
    return F.batch_norm(x, s[f'{bn}.running_mean'], s[f'{bn}.running_var'],
                        s[f'{bn}.weight'], s[f'{bn}.bias'], False, 0, 1e-5)


def _seg_bias(s, p, rows, cols):
    bias = s[f'{p}.attention_biases_seg'][:, s[f'{p}.attention_bias_idxs_seg']]
    return F.interpolate(bias.unsqueeze(0), size=(rows, cols),
                         mode='bicubic')[0]


def _ffn(x, s, p):
    channels = s[f'{p}.mid.weight'].shape[0]
    x = F.gelu(_conv_bn(x, s, f'{p}.fc1', f'{p}.norm1'))
    x = F.gelu(_conv_bn(x, s, f'{p}.mid', f'{p}.mid_norm', groups=channels))
    return _conv_bn(x, s, f'{p}.fc2', f'{p}.norm2')


def _attention(x, s, p, heads=8, key_dim=32):
    if f'{p}.stride_conv.0.weight' in s:
        x = _conv_bn(x, s, f'{p}.stride_conv.0', f'{p}.stride_conv.1', 2,
                     x.shape[1])
        upsample = True
    else:
        upsample = False
    b, _, h, w = x.shape
    q = _conv_bn(x, s, f'{p}.q.0', f'{p}.q.1').reshape(b, heads, -1, h * w)
    k = _conv_bn(x, s, f'{p}.k.0', f'{p}.k.1').reshape(b, heads, -1, h * w)
    v = _conv_bn(x, s, f'{p}.v.0', f'{p}.v.1')
    v_local = _conv_bn(v, s, f'{p}.v_local.0', f'{p}.v_local.1', 1,
                       v.shape[1])
    v = v.reshape(b, heads, -1, h * w).transpose(2, 3)
    attn = q.transpose(2, 3) @ k * key_dim**-0.5
    attn = attn + _seg_bias(s, p, h * w, h * w)
    attn = F.conv2d(attn, s[f'{p}.talking_head1.weight'],
                    s[f'{p}.talking_head1.bias']).softmax(-1)
    attn = F.conv2d(attn, s[f'{p}.talking_head2.weight'],
                    s[f'{p}.talking_head2.bias'])
    out = (attn @ v).transpose(2, 3).reshape(b, -1, h, w) + v_local
    if upsample:
        out = F.interpolate(out, scale_factor=2, mode='bilinear')
    return _conv_bn(F.gelu(out), s, f'{p}.proj.1', f'{p}.proj.2')


def _downsample_attention(x, s, p, heads=8, key_dim=16):
    b, c, h, w = x.shape
    local = F.conv2d(x, s[f'{p}.q.local.0.weight'], s[f'{p}.q.local.0.bias'],
                     2, 1, 1, c)
    q = _conv_bn(local + x[:, :, ::2, ::2], s, f'{p}.q.proj.0',
                 f'{p}.q.proj.1').reshape(b, heads, -1, h * w // 4)
    k = _conv_bn(x, s, f'{p}.k.0', f'{p}.k.1').reshape(b, heads, -1, h * w)
    v = _conv_bn(x, s, f'{p}.v.0', f'{p}.v.1')
    v_local = _conv_bn(v, s, f'{p}.v_local.0', f'{p}.v_local.1', 2,
                       v.shape[1])
    v = v.reshape(b, heads, -1, h * w).transpose(2, 3)
    attn = q.transpose(2, 3) @ k * key_dim**-0.5
    attn = (attn + _seg_bias(s, p, h * w // 4, h * w)).softmax(-1)
    out = (attn @ v).transpose(2, 3).reshape(b, -1, h // 2, w // 2)
    return _conv_bn(F.gelu(out + v_local), s, f'{p}.proj.1', f'{p}.proj.2')


def original_dense(state, x):
    """The authors' dense forward (``efficientformerv2_*_feat``) over the
    release key names: the four raw stage outputs."""
    s = strip = {k[len('backbone.'):]: v for k, v in state.items()}
    x = F.gelu(_conv_bn(x, s, 'patch_embed.0', 'patch_embed.1', 2))
    x = F.gelu(_conv_bn(x, s, 'patch_embed.3', 'patch_embed.4', 2))
    outs = []
    for position in range(7):
        p = f'network.{position}'
        if position in (1, 3):
            x = _conv_bn(x, s, f'{p}.proj', f'{p}.norm', 2)
        elif position == 5:
            x = (_conv_bn(x, s, f'{p}.conv', f'{p}.bn', 2) +
                 _downsample_attention(x, s, f'{p}.attn'))
        else:
            blocks = sorted({
                int(k.split('.')[2])
                for k in strip if k.startswith(p + '.')
            })
            for j in blocks:
                b = f'{p}.{j}'
                if f'{b}.token_mixer.q.0.weight' in s:
                    x = x + s[f'{b}.layer_scale_1'] * _attention(
                        x, s, f'{b}.token_mixer')
                x = x + s[f'{b}.layer_scale_2'] * _ffn(x, s, f'{b}.mlp')
            outs.append(x)
    return outs


@pytest.mark.parametrize('task, size', [('detection', (320, 448)),
                                        ('segmentation', (256, 192))])
def test_released_dense_backbone_gives_the_original_outputs(
        task, size, tmp_path):
    """A released Mask R-CNN / Semantic FPN backbone (mmdet 2.x / mmseg
    0.x layout, 25x25 / 16x16 dense tables) loads in 'dense' bias mode,
    everything used or ignored by name, and reproduces the original
    forward."""
    generator = torch.Generator().manual_seed(3)

    def fill(name, shape):
        if name.endswith('running_var'):
            return torch.rand(shape, generator=generator) + 0.5
        if re.search(r'layer_scale_[12]$', name):
            return torch.rand(shape, generator=generator) * 0.5 + 0.25
        if 'attention_biases' in name:
            return torch.randn(shape, generator=generator)
        if name.endswith('weight') and len(shape) == 1:
            return 1 + 0.1 * torch.randn(shape, generator=generator)
        return 0.1 * torch.randn(shape, generator=generator)

    state = release_state(f'{task}/s0', fill)
    path = str(tmp_path / 'released.pth')
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = EfficientFormerV2('s0', out_norm_cfg=None)
    report = model.load_pretrained(path)
    assert report['new'] == []
    assert list(report['ignored_by_reason']) == [model.unused_table_reason]
    side = 25 if task == 'detection' else 16
    assert [(a.bias_mode, a.resolution)
            for a in model._attentions().values()
            ] == [('dense', side)] * 2 + [('dense', 2 * side)] + [
                ('dense', side)
            ] * 2
    x = torch.randn(1, 3, *size, generator=generator)
    with torch.no_grad():
        expected = original_dense(state, x)
        actual = model.eval()(x)
    for out, ref in zip(actual, expected):
        assert_close_to_scale(out, ref, tol=1e-5)


def test_dense_mode_can_be_built_for_ddp():
    model = EfficientFormerV2(TINY, bias_mode='dense', bias_resolution=16)
    tables = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if k.endswith('dense_attention_biases')}
    assert tables['stages.3.downsample.attention.dense_attention_biases'] == (
        8, 32 * 32)
    assert tables['stages.3.blocks.1.token_mixer.dense_attention_biases'] == (
        8, 16 * 16)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 512, 512))[3].shape[-1] == 16


# -------------------------------------------------- contract and deploy --
def test_frozen_stages_and_norm_eval():
    model = EfficientFormerV2(TINY, frozen_stages=2, norm_eval=True).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[3].blocks[0].mlp.norm1.training
    assert model.out_norms['3'].training


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = randomize(EfficientFormerV2(TINY, drop_path_rate=0.)).train()
    checkpointed = EfficientFormerV2(TINY, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    outs = [m(x) for m in (plain, checkpointed)]
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    weights = [torch.randn_like(o) for o in outs[0]]
    for model, out in zip((plain, checkpointed), outs):
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    for a, b in zip(plain.buffers(), checkpointed.buffers()):
        assert torch.equal(a, b)


def test_drop_path_rate_increases_linearly():
    model = EfficientFormerV2('s0', drop_path_rate=0.1)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
        for b in s.blocks
    ]
    assert rates[0] == 0 and math.isclose(rates[-1], 0.1, rel_tol=1e-6)
    assert rates == sorted(rates)


@pytest.mark.parametrize('size', [(224, 224), (97, 130)])
def test_switch_to_deploy_folds_every_batchnorm(size):
    model = randomize(EfficientFormerV2(TINY), seed=5).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        assert not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            for m in model.modules())
        actual = model(x)
        assert model.switch_to_deploy()(x)[0].equal(actual[0])
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e, tol=1e-5)


def test_deploy_with_other_norms_folds_only_batchnorms():
    model = randomize(
        EfficientFormerV2(TINY, norm_cfg=dict(type='GN', num_groups=2)),
        seed=7).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        actual = model.switch_to_deploy()(x)
    block = model.stages[3].blocks[-1]
    assert not isinstance(block.layer_scale1, nn.Identity)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e, tol=1e-5)


def test_mmcv_fuse_conv_bn():
    import copy
    cnn = pytest.importorskip('mmcv.cnn')
    model = randomize(EfficientFormerV2(TINY), seed=8).eval()
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        fused = cnn.fuse_conv_bn(copy.deepcopy(model))
        actual = fused(x)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


@pytest.mark.parametrize('channels_last', [False, True])
def test_cpu_fast_path_fuses_the_ffn_convs(channels_last):
    from conftest import counting_fused_convs, deployed
    from mixer_backbones.ops import cpu
    if not cpu.fused_ops_available():
        pytest.skip('no oneDNN in this torch build')
    model = randomize(EfficientFormerV2(TINY), seed=6).eval()
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        expected = model(x)
        model, x = deployed(model, x, channels_last)
        model(x)  # channels-last weights are packed on the first call
        with counting_fused_convs() as calls:
            actual = model(x)
    # Each block's first and last FFN conv, with the activation and the
    # residual addition.
    blocks = sum(len(stage.blocks) for stage in model.stages)
    assert len(calls) == 2 * blocks
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e, tol=1e-5)


def test_max_differences_vs_timm_were_measured():
    if not ERRORS:
        pytest.skip('run with the timm equivalence tests')
    print('\nmax |ours - timm| / max |timm| at 224:')
    for (arch, layout), error in sorted(ERRORS.items()):
        print(f'  {arch:3s} {layout:15s} {error:.2e}')


@pytest.mark.parametrize('model, task, config', [
    ('mask_rcnn', 'detection', 'configs/efficientformer_v2/'
     'mask-rcnn_efficientformerv2-s0_fpn_1x_coco.py'),
    ('semantic_fpn', 'segmentation', 'configs/efficientformer_v2/'
     'fpn_efficientformerv2-s0_8xb4-40k_ade20k-512x512.py'),
])
def test_whole_release_fits_our_config(model, task, config):
    """A whole released Mask R-CNN / Semantic FPN (backbone keys from the
    authors' code, neck and heads of mmdet 2.x / mmseg 0.x) converts and
    fits the model our config builds, key for key; only the unused
    ImageNet tables are left out."""
    registry = pytest.importorskip(
        ('mmdet' if task == 'detection' else 'mmseg') + '.registry')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mixer_backbones.release import check_against_model, convert_release
    with open(MANIFEST.replace('efficientformer_v2.json',
                               'whole_models.json')) as f:
        heads = json.load(f)['layouts'][f'{model}/efficientformer_v2/s0']
    state = release_state(f'{task}/s0', lambda name, shape: torch.rand(shape))
    state.update({
        name: torch.rand(shape) if dtype == 'float32' else torch.zeros(
            shape, dtype=torch.long)
        for name, shape, dtype in heads['keys']
    })
    converted, info = convert_release(state)
    assert info['family'] == 'efficientformer_v2'
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        built = registry.MODELS.build(cfg.model)
    check = check_against_model(converted, built)
    assert set(check['ignored'].values()) == {
        built.backbone.unused_table_reason
    }
    assert len(check['ignored']) == 5  # 4 attention blocks, 1 downsample
    own = built.state_dict()
    assert sorted(k for k in converted if k in own) == sorted(own)
