"""Released checkpoints of the original repositories: every tensor of a
release layout loads, dense backbones give the original outputs, whole
released detectors and segmentors convert for our configs and evaluate,
and unknown keys are refused by name.

State dicts are built with random values from the manifests under
``tests/fixtures/manifests`` (key names, shapes and dtypes generated once
from the authors' model code; see ``make_release_manifests.py`` there).
The "original" outputs come from :func:`original_poolformer` and
:func:`original_efficientformer`, a plain re-implementation, in this file
and over the release key names, of the authors' dense forward (for
EfficientFormer: the ``attention_biases_seg`` table expanded to the pair
matrix of its grid and resized bicubically, as an image, to N x N). Both
were checked once against the authors' own code (sail-sg/poolformer
``models/poolformer.py``, snap-research/EfficientFormer
``detection/backbone.py`` and ``segmentation/backbone.py``, run with their
OpenMMLab imports stubbed), as was the package's loading directly.
"""
import functools
import glob
import itertools
import json
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, assert_close_to_scale, metric_values, run_tool
from mixer_backbones import ConvMixer, EfficientFormer, PoolFormer
from mixer_backbones.checkpoint import CheckpointError, strip_prefix
from mixer_backbones.models.efficientformer import RelativeBiasAttention
from mixer_backbones.release import check_against_model, convert_release

pytestmark = pytest.mark.slow

MANIFESTS = osp.join(
    osp.dirname(osp.abspath(__file__)), 'fixtures', 'manifests')
FAMILIES = {'poolformer': PoolFormer, 'efficientformer': EfficientFormer}
DERIVED = ('attention_bias_idxs', 'attention_bias_idxs_seg')
UNUSED_TABLE = ('the ImageNet 7x7 bias table, which the original dense '
                'models keep but never use')


@functools.lru_cache(None)
def manifest(name):
    with open(osp.join(MANIFESTS, f'{name}.json')) as f:
        return json.load(f)['layouts']


@functools.lru_cache(None)
def original_offset_index(resolution):
    """The original ``attention_bias_idxs``: offsets ``(|dy|, |dx|)``
    numbered in the order they first appear over all token pairs."""
    points = list(itertools.product(range(resolution), range(resolution)))
    numbers, index = {}, []
    for a in points:
        for b in points:
            offset = (abs(a[0] - b[0]), abs(a[1] - b[1]))
            index.append(numbers.setdefault(offset, len(numbers)))
    return torch.tensor(index).view(len(points), len(points))


def random_state(keys, seed=0):
    """A state dict with every key of a manifest: random weights with
    norms near identity, layer scales near 0.5 (so every branch shows),
    positive variances and the original index buffers."""
    generator = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=generator)

    state = {}
    for name, shape, dtype in keys:
        if dtype == 'int64':
            if name.endswith(DERIVED):
                value = original_offset_index(int(round(shape[0]**0.5)))
            else:
                value = torch.zeros(shape, dtype=torch.long)
        elif name.endswith('running_var'):
            value = torch.rand(shape, generator=generator) + 0.5
        elif re.search(r'layer_scale_[12]$', name):
            value = torch.rand(shape, generator=generator) * 0.5 + 0.25
        elif name.endswith(('attention_biases', 'attention_biases_seg')):
            value = randn(shape)
        elif re.search(r'norm\d*\.weight$', name):
            value = 1 + 0.1 * randn(shape)
        else:
            value = 0.05 * randn(shape)
        assert list(value.shape) == shape, name
        state[name] = value
    return state


def numbered_state(keys):
    """Every key of a manifest, each float tensor filled with its own
    number (so that a tensor renamed onto another shows), the index
    buffers as the original writes them."""
    state = {}
    for number, (name, shape, dtype) in enumerate(keys):
        if name.endswith(DERIVED):
            state[name] = original_offset_index(int(round(shape[0]**0.5)))
        else:
            state[name] = torch.full(
                shape, number, dtype=getattr(torch, dtype))
    return state


def dense_levels(state):
    """Output levels of a dense release backbone: its norm{0,2,4,6}."""
    return tuple(
        int(m[1]) // 2
        for m in (re.fullmatch(r'norm(\d)\.weight', k) for k in state) if m)


# ---------------------------------------------- the original forwards --
def _group_norm(x, state, name):
    return F.group_norm(x, 1, state[f'{name}.weight'], state[f'{name}.bias'],
                        1e-5)


def _batch_norm(x, state, name):
    return F.batch_norm(x, state[f'{name}.running_mean'],
                        state[f'{name}.running_var'], state[f'{name}.weight'],
                        state[f'{name}.bias'], False, 0., 1e-5)


def _conv(x, state, name, stride=1, padding=0):
    return F.conv2d(x, state[f'{name}.weight'], state[f'{name}.bias'], stride,
                    padding)


def _blocks(state, position):
    found = {
        int(m[1])
        for m in (re.match(rf'network\.{position}\.(\d+)\.', k) for k in state)
        if m
    }
    return sorted(found)


def original_poolformer(state, x):
    """The sail-sg dense forward over release keys (no ``backbone.``):
    ``{level: normalised output}`` for the levels with a norm."""
    x = _conv(x, state, 'patch_embed.proj', 4, 2)
    outs = {}
    for stage in range(4):
        position = 2 * stage
        if stage:
            x = _conv(x, state, f'network.{position - 1}.proj', 2, 1)
        for j in _blocks(state, position):
            p = f'network.{position}.{j}'
            y = _group_norm(x, state, f'{p}.norm1')
            mixed = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False) - y
            x = x + state[f'{p}.layer_scale_1'][:, None, None] * mixed
            y = _group_norm(x, state, f'{p}.norm2')
            y = _conv(
                F.gelu(_conv(y, state, f'{p}.mlp.fc1')), state, f'{p}.mlp.fc2')
            x = x + state[f'{p}.layer_scale_2'][:, None, None] * y
        if f'norm{position}.weight' in state:
            outs[stage] = _group_norm(x, state, f'norm{position}')
    return outs


def _original_attention(tokens, state, p, heads=8, key_dim=32):
    batch, num, _ = tokens.shape
    qkv = F.linear(tokens, state[f'{p}.qkv.weight'], state[f'{p}.qkv.bias'])
    q, k, v = qkv.reshape(batch, num, heads,
                          -1).split([key_dim, key_dim, 4 * key_dim], dim=3)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
    logits = (q @ k.transpose(-2, -1)) * key_dim**-0.5
    table = state[f'{p}.attention_biases_seg']
    pair = table[:, original_offset_index(int(round(table.shape[1]**0.5)))]
    logits = logits + F.interpolate(
        pair.unsqueeze(0), size=(num, num), mode='bicubic')
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, num, -1)
    return F.linear(out, state[f'{p}.proj.weight'], state[f'{p}.proj.bias'])


def original_efficientformer(state, x):
    """The snap-research dense forward over release keys."""
    x = F.relu(
        _batch_norm(
            _conv(x, state, 'patch_embed.0', 2, 1), state, 'patch_embed.1'))
    x = F.relu(
        _batch_norm(
            _conv(x, state, 'patch_embed.3', 2, 1), state, 'patch_embed.4'))
    outs = {}
    for stage in range(4):
        position = 2 * stage
        if stage:
            x = _batch_norm(
                _conv(x, state, f'network.{position - 1}.proj', 2, 1), state,
                f'network.{position - 1}.norm')
        for j in _blocks(state, position):
            p = f'network.{position}.{j}'
            if f'{p}.token_mixer.qkv.weight' in state:  # Meta3D
                batch, channels, height, width = x.shape
                t = x.flatten(2).transpose(1, 2)
                y = F.layer_norm(t, (channels, ), state[f'{p}.norm1.weight'],
                                 state[f'{p}.norm1.bias'])
                t = t + state[f'{p}.layer_scale_1'] * _original_attention(
                    y, state, f'{p}.token_mixer')
                y = F.layer_norm(t, (channels, ), state[f'{p}.norm2.weight'],
                                 state[f'{p}.norm2.bias'])
                y = F.linear(
                    F.gelu(
                        F.linear(y, state[f'{p}.mlp.fc1.weight'],
                                 state[f'{p}.mlp.fc1.bias'])),
                    state[f'{p}.mlp.fc2.weight'], state[f'{p}.mlp.fc2.bias'])
                t = t + state[f'{p}.layer_scale_2'] * y
                x = t.transpose(1, 2).reshape(batch, channels, height, width)
                continue
            mixed = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) - x
            x = x + state[f'{p}.layer_scale_1'][:, None, None] * mixed
            y = _batch_norm(
                _conv(x, state, f'{p}.mlp.fc1'), state, f'{p}.mlp.norm1')
            y = _batch_norm(
                _conv(F.gelu(y), state, f'{p}.mlp.fc2'), state,
                f'{p}.mlp.norm2')
            x = x + state[f'{p}.layer_scale_2'][:, None, None] * y
        if f'norm{position}.weight' in state:
            outs[stage] = _group_norm(x, state, f'norm{position}')
    return outs


def save_release(state, path, prefix=''):
    """Write ``state`` as the original repositories wrote it."""
    torch.save(
        {
            'state_dict': {
                prefix + k: v
                for k, v in state.items()
            },
            'meta': {
                'mmdet_version': '2.19.0'
            }
        }, path)
    return str(path)


# ------------------------------------- every tensor of every layout ----
LAYOUTS = [(family, name) for family in FAMILIES
           for name in sorted(manifest(family))]


@pytest.mark.parametrize('family, name', LAYOUTS)
def test_release_layout_loads_every_tensor(family, name):
    """No tensor of a release is dropped or renamed onto another: each
    non-derived source tensor is exactly one converted tensor, and each
    converted tensor is loaded into the model or ignored for a stated
    reason (classifier, the ImageNet table the dense models keep unused);
    every output norm of a dense release is loaded."""
    state = numbered_state(manifest(family)[name]['keys'])
    dense = not name.startswith('classification/')
    if dense:
        state = strip_prefix(state, 'backbone.')
    arch = name.split('/')[-1]
    model_cls = FAMILIES[family]
    converted, layout = model_cls.convert_checkpoint(state)
    sources = {v.data_ptr(): k for k, v in state.items()}
    kept = [k for k in state if not k.endswith(DERIVED)]
    assert len(kept) < len(state) or family == 'poolformer'
    origin = {k: sources[v.data_ptr()] for k, v in converted.items()}
    assert sorted(origin.values()) == sorted(kept)  # a bijection
    for key, value in converted.items():
        assert torch.equal(value.flatten(), state[origin[key]].flatten()), key
    levels = dense_levels(state) if dense else (0, 1, 2, 3)
    model = model_cls(arch, out_indices=levels)
    report = model.load_converted(converted, source=name, layout=layout)
    reasons = set(report['ignored_by_reason'])
    if dense:
        assert report['new'] == []
        assert reasons <= {UNUSED_TABLE}
        assert bool(reasons) == (family == 'efficientformer')
    else:
        assert reasons == {'classifier'}
        assert all(k.startswith('out_norms.') for k in report['new'])
    assert report['loaded'] + len(report['ignored']) == len(converted)
    own = model.state_dict()
    loaded = [k for k in converted if k in own]
    assert len(loaded) == report['loaded']
    for key in loaded:
        assert torch.equal(own[key], converted[key]), key


def test_converter_collisions_raise():
    state = random_state(manifest('poolformer')['classification/s12']['keys'])
    state['norm6.weight'] = state['norm.weight'].clone()  # two final norms
    with pytest.raises(
            CheckpointError, match=r"'norm6\.weight'.*norm\.weight"):
        PoolFormer.convert_checkpoint(state)
    keys = manifest('efficientformer')['detection/l1']['keys']
    state = strip_prefix(random_state(keys), 'backbone.')
    state['network.6.4.token_mixer.dense_attention_biases'] = torch.zeros(
        8, 625)
    with pytest.raises(CheckpointError, match='dense_attention_biases'):
        EfficientFormer.convert_checkpoint(state)


@pytest.mark.parametrize('norms, levels', [((2, 4, 6), (1, 2, 3)),
                                           ((0, 2, 4, 6), (0, 1, 2, 3)),
                                           ((4, ), (2, )), ((0, 6), (0, 3))])
def test_poolformer_any_subset_of_dense_norms(norms, levels):
    keys = manifest('poolformer')['dense/s12']['keys']
    state = strip_prefix(random_state(keys), 'backbone.')
    for i in {0, 2, 4, 6} - set(norms):
        del state[f'norm{i}.weight'], state[f'norm{i}.bias']
    converted, _ = PoolFormer.convert_checkpoint(state)
    assert sorted(k for k in converted if k.startswith('out_norms.')) == \
        sorted(f'out_norms.{i // 2}.{w}' for i in norms
               for w in ('weight', 'bias'))
    model = PoolFormer('s12', out_indices=levels)
    report = model.load_converted(converted)
    assert report['new'] == [] and report['ignored'] == []


# --------------------------------------- outputs of the original code ---
def test_poolformer_retinanet_release_equals_original(tmp_path):
    """The RetinaNet release (FORK_LAST3=1: norm2/4/6) in the RetinaNet
    configs' backbone (out_indices=(1, 2, 3)): all tensors load and the
    outputs are the original's."""
    keys = manifest('poolformer')['dense_last3/s12']['keys']
    state = strip_prefix(random_state(keys, seed=3), 'backbone.')
    path = save_release(state, tmp_path / 'retinanet.pth', 'backbone.')
    model = PoolFormer('s12', out_indices=(1, 2, 3)).eval()
    report = model.load_pretrained(path)
    assert report['new'] == [] and report['ignored'] == []
    assert report['loaded'] == len(state)
    x = torch.randn(1, 3, 224, 320)
    with torch.no_grad():
        expected = original_poolformer(state, x)
        actual = model(x)
    assert sorted(expected) == [1, 2, 3]
    for level, out in zip((1, 2, 3), actual):
        assert_close_to_scale(out, expected[level])


def test_poolformer_unrequested_levels_are_reported(tmp_path):
    """A Mask R-CNN release (four norms) in a backbone requesting three
    levels loads; the unused norm is named in the report."""
    keys = manifest('poolformer')['dense/s12']['keys']
    state = strip_prefix(random_state(keys), 'backbone.')
    model = PoolFormer('s12', out_indices=(1, 2, 3))
    report = model.load_pretrained(
        save_release(state, tmp_path / 'mask_rcnn.pth', 'backbone.'))
    assert report['ignored_by_reason'] == {
        'out_norms of a level not built here (out_indices=(1, 2, 3))':
        ['out_norms.0.weight', 'out_norms.0.bias']
    }


@pytest.mark.parametrize('arch', ['l1', 'l3'])
@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_efficientformer_dense_release_equals_original(arch, task, tmp_path):
    keys = manifest('efficientformer')[f'{task}/{arch}']['keys']
    state = strip_prefix(random_state(keys, seed=1), 'backbone.')
    model = EfficientFormer(arch).eval()
    report = model.load_pretrained(
        save_release(state, tmp_path / 'release.pth', 'backbone.'))
    assert report['new'] == []
    resolution = 25 if task == 'detection' else 16
    attentions = [
        m for m in model.modules() if isinstance(m, RelativeBiasAttention)
    ]
    assert len(attentions) == EfficientFormer.arch_zoo[arch]['vit_num']
    assert all((a.bias_mode, a.resolution) == ('dense', resolution)
               for a in attentions)
    for size in ((512, 512), (800, 1216)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = original_efficientformer(state, x)
            actual = model(x)
        for level in range(4):
            assert_close_to_scale(actual[level], expected[level])
    # The table matters: without it the last level is another.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RelativeBiasAttention):
                module.bias_table.zero_()
        unbiased = model(x[..., :512, :512])[3]
        expected = original_efficientformer(state, x[..., :512, :512])[3]
    assert (unbiased - expected).abs().max() > 1e-3 * expected.abs().max()


def test_efficientformer_dense_mode_round_trips(tmp_path):
    """Released layout -> our layout -> a fresh model (ours, torch's
    strict loading, and a model built in 'dense' mode) give the same
    outputs; the parameter object survives the switch (an optimizer built
    before still holds it); ImageNet weights keep the default mode."""
    keys = manifest('efficientformer')['detection/l1']['keys']
    state = strip_prefix(random_state(keys, seed=2), 'backbone.')
    converted, layout = EfficientFormer.convert_checkpoint(state)
    first = EfficientFormer('l1').eval()
    first.load_converted(converted)
    ours = first.state_dict()
    assert 'stages.3.blocks.3.token_mixer.dense_attention_biases' in ours
    assert 'stages.3.blocks.3.token_mixer.attention_biases' not in ours
    assert EfficientFormer.convert_checkpoint(ours)[1] == 'mixer_backbones'
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        expected = first(x)
    second = EfficientFormer('l1').eval()
    table = second.stages[3].blocks[3].token_mixer.attention_biases
    optimizer = torch.optim.AdamW(second.parameters())
    second.load_converted(ours)
    assert second.stages[3].blocks[3].token_mixer.bias_table is table
    assert any(p is table for g in optimizer.param_groups for p in g['params'])
    third = EfficientFormer('l1').eval()
    third.load_state_dict(ours, strict=True)
    built = EfficientFormer('l1', bias_mode='dense', bias_resolution=25)
    assert sorted(built.state_dict()) == sorted(ours)
    built.eval().load_state_dict(ours, strict=True)
    with torch.no_grad():
        for model in (second, third, built):
            for a, b in zip(model(x), expected):
                assert torch.equal(a, b)
    with pytest.raises(ValueError, match='bias_resolution'):
        EfficientFormer('l1', bias_mode='dense')
    imagenet = random_state(
        manifest('efficientformer')['classification/l1']['keys'])
    default = EfficientFormer('l1')
    default.load_converted(EfficientFormer.convert_checkpoint(imagenet)[0])
    assert default.stages[3].blocks[3].token_mixer.bias_mode == 'bicubic'


def test_failed_load_switches_back():
    keys = manifest('efficientformer')['detection/l1']['keys']
    state = strip_prefix(random_state(keys), 'backbone.')
    converted, _ = EfficientFormer.convert_checkpoint(state)
    converted['stages.0.blocks.0.extra_scale'] = torch.zeros(3)
    model = EfficientFormer('l1')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match='extra_scale'):
        model.load_converted(converted)
    after = model.state_dict()
    assert sorted(after) == sorted(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


# ----------------------------------------------- unknown keys refused ---
def _timm_state(family, arch):
    timm = pytest.importorskip('timm')
    name = {
        'poolformer': f'poolformer_{arch}',
        'efficientformer': f'efficientformer_{arch}',
        'convmixer': 'convmixer_1024_20_ks9_p14',
    }[family]
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).state_dict()


def _layout_state(family, layout):
    """``(state dict as written to the file, key to add)`` for ``layout``
    of ``family``."""
    if layout == 'mixer_backbones':
        model = {
            'poolformer': PoolFormer('s12'),
            'efficientformer': EfficientFormer('l1'),
            'convmixer': ConvMixer('1024_20')
        }[family]
        return model.state_dict(), 'stages.0.blocks.0.extra_scale' if (
            family != 'convmixer') else 'blocks.0.extra_scale'
    if layout in ('classification', 'dense', 'dense_last3', 'detection',
                  'segmentation'):
        arch = 's12' if family == 'poolformer' else 'l1'
        state = random_state(manifest(family)[f'{layout}/{arch}']['keys'])
        prefix = '' if layout == 'classification' else 'backbone.'
        return state, f'{prefix}network.0.0.extra_scale'
    arch = {'poolformer': 's12', 'efficientformer': 'l1'}.get(family)
    timm_state = _timm_state(family, arch)
    if layout == 'timm':
        return timm_state, ('blocks.0.extra_scale' if family == 'convmixer'
                            else 'stages.0.blocks.0.extra_scale')
    module = __import__(f'test_{family}')
    if layout == 'mmpretrain':
        state = module.to_mmpretrain(timm_state)['state_dict']
        key = ('backbone.stages.0.extra_scale' if family == 'convmixer' else
               'backbone.network.0.1.extra_scale')
        return state, key
    assert layout == 'locuslab'
    return module.to_locuslab(timm_state, 20), '3.0.extra_scale'


UNKNOWN_KEY_LAYOUTS = [
    ('poolformer', layout)
    for layout in ('mixer_backbones', 'timm', 'classification', 'mmpretrain',
                   'dense', 'dense_last3')
] + [('efficientformer', layout)
     for layout in ('mixer_backbones', 'timm', 'classification', 'mmpretrain',
                    'detection', 'segmentation')
     ] + [('convmixer', layout)
          for layout in ('mixer_backbones', 'timm', 'locuslab', 'mmpretrain')]


@pytest.mark.parametrize('family, layout', UNKNOWN_KEY_LAYOUTS)
def test_unknown_key_is_refused_in_every_layout(family, layout, tmp_path):
    state, key = _layout_state(family, layout)
    model_cls = {
        'poolformer': PoolFormer,
        'efficientformer': EfficientFormer,
        'convmixer': ConvMixer
    }[family]
    arch = {
        'poolformer': 's12',
        'efficientformer': 'l1',
        'convmixer': '1024_20'
    }[family]
    path = str(tmp_path / 'checkpoint.pth')
    dense = layout in ('dense', 'dense_last3', 'detection', 'segmentation')
    levels = (1, 2, 3) if layout == 'dense_last3' else (0, 1, 2, 3)
    kwargs = {} if family == 'convmixer' else dict(out_indices=levels)
    torch.save({'state_dict': state} if dense else state, path)
    model_cls(arch, **kwargs).load_pretrained(path)  # loads as it is
    torch.save({'state_dict': dict(state, **{key: torch.zeros(3)})}
               if dense else dict(state, **{key: torch.zeros(3)}), path)
    with pytest.raises(CheckpointError, match=r'fit nowhere.*extra_scale'):
        model_cls(arch, **kwargs).load_pretrained(path)


@pytest.mark.parametrize('key', [
    'head.extra', 'head.fc.extra.weight', 'norm.running_mean',
    'out_norms.9.weight', 'out_norms.0.extra'
])
def test_classifier_and_level_lookalikes_are_refused(key):
    """Only the classifier's own weights and the norms of real levels are
    ignored; anything else under their prefixes is refused."""
    state = random_state(manifest('poolformer')['classification/s12']['keys'])
    converted, _ = PoolFormer.convert_checkpoint(state)
    converted[key] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=re.escape(key)):
        PoolFormer('s12', out_indices=(1, 2, 3)).load_converted(converted)


# ------------------------------------------------- whole released models --
def whole_release(model, family, arch, seed=0):
    """A whole released detector/segmentor state dict (mmdet 2.x / mmseg
    0.x keys) from the manifests."""
    if family == 'poolformer':
        layout = f'dense_last3/{arch}' if model == 'retinanet' else (
            f'dense/{arch}')
        heads = f'{model}/poolformer/{arch[0]}'
    else:
        task = 'segmentation' if model == 'semantic_fpn' else 'detection'
        layout = f'{task}/{arch}'
        heads = f'{model}/efficientformer/{arch}'
    keys = manifest(family)[layout]['keys'] + manifest(
        'whole_models')[heads]['keys']
    return random_state(keys, seed)


def build_config_model(config):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    registry = pytest.importorskip(f'{cfg.default_scope}.registry')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.MODELS.build(cfg.model)


WHOLE = [('retinanet', 'poolformer', arch,
          f'configs/poolformer/retinanet_poolformer-{arch}_fpn_1x_coco.py')
         for arch in ('s12', 's24', 's36')] + [
             ('mask_rcnn', 'poolformer', arch,
              f'configs/poolformer/mask-rcnn_poolformer-{arch}_fpn_1x_coco.py')
             for arch in ('s12', 's24', 's36')
         ] + [('semantic_fpn', 'poolformer', arch,
               f'configs/poolformer/fpn_poolformer-{arch}_8xb4-40k_'
               'ade20k-512x512.py')
              for arch in ('s12', 's24', 's36', 'm36', 'm48')] + [
                  ('mask_rcnn', 'efficientformer', arch,
                   'configs/efficientformer/mask-rcnn_efficientformer-'
                   f'{arch}_fpn_1x_coco.py') for arch in ('l1', 'l3', 'l7')
              ] + [('semantic_fpn', 'efficientformer', arch,
                    'configs/efficientformer/fpn_efficientformer-'
                    f'{arch}_8xb4-40k_ade20k-512x512.py')
                   for arch in ('l1', 'l3', 'l7')]


@pytest.mark.parametrize('model, family, arch, config', WHOLE)
def test_whole_release_fits_our_config(model, family, arch, config):
    """Every key and shape of a released model (backbone, neck, heads)
    against the model our config builds: all fit, nothing is left out but
    the ImageNet bias tables the original dense EfficientFormer keeps
    unused."""
    state = whole_release(model, family, arch)
    converted, info = convert_release(state)
    assert info['family'] == family
    built = build_config_model(config)
    check = check_against_model(converted, built)
    if family == 'efficientformer':
        assert set(check['ignored'].values()) == {UNUSED_TABLE}
        assert len(
            check['ignored']) == EfficientFormer.arch_zoo[arch]['vit_num']
    else:
        assert check['ignored'] == {}
    own = built.state_dict()
    assert sorted(k for k in converted if k in own) == sorted(own)
    rest = [k for k in state if not k.startswith('backbone.')]
    assert rest and all(torch.equal(converted[k], state[k]) for k in rest)


def test_whole_release_refusals():
    state = whole_release('mask_rcnn', 'poolformer', 's12')
    with pytest.raises(CheckpointError, match=r'neck\.extra\.weight'):
        convert_release(dict(state, **{'neck.extra.weight': torch.zeros(1)}))
    with pytest.raises(CheckpointError, match='cannot tell'):
        convert_release({
            k: v
            for k, v in state.items()
            if not k.startswith(('rpn_head.', 'roi_head.'))
        })
    converted, _ = convert_release(state)
    retinanet = build_config_model(
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py')
    with pytest.raises(CheckpointError, match=r'rpn_head\.rpn_cls\.weight'):
        check_against_model(converted, retinanet)
    mask_rcnn = build_config_model(
        'configs/poolformer/mask-rcnn_poolformer-s12_fpn_1x_coco.py')
    converted['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(11, 1024)
    with pytest.raises(
            CheckpointError,
            match=r'fc_cls\.weight \(11, 1024\) vs \(81, 1024\)'):
        check_against_model(converted, mask_rcnn)


_E2E_CONFIG = """
_base_ = '{base}'
data_root = '{root}/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='{ann}',
                 data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='{ann}')
test_evaluator = val_evaluator
model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))
"""


def test_whole_release_mask_rcnn_converts_and_evaluates(toy_coco, tmp_path):
    """A released-layout EfficientFormer-L1 Mask R-CNN (random weights, 80
    COCO classes) converts with tools/convert_checkpoint.py --whole-model
    and evaluates through tools/test.py with our config (toy images, whose
    three categories are given COCO's 80)."""
    datasets = pytest.importorskip('mmdet.datasets')
    classes = datasets.CocoDataset.METAINFO['classes']
    with open(toy_coco['val_ann']) as f:
        annotations = json.load(f)
    annotations['categories'] = [
        dict(id=i + 1, name=name) for i, name in enumerate(classes)
    ]
    ann = tmp_path / 'instances_val2017_coco80.json'
    ann.write_text(json.dumps(annotations))
    config = tmp_path / 'mask-rcnn_l1_toy.py'
    config.write_text(
        _E2E_CONFIG.format(
            base=osp.join(
                ROOT, 'configs/efficientformer/'
                'mask-rcnn_efficientformer-l1_fpn_1x_coco.py'),
            root=toy_coco['root'],
            ann=ann))
    state = whole_release('mask_rcnn', 'efficientformer', 'l1')
    source = save_release(state, tmp_path / 'mask_rcnn_l1_release.pth')
    converted = tmp_path / 'converted.pth'
    result = run_tool('tools/convert_checkpoint.py', 'efficientformer', source,
                      converted, '--whole-model', config)
    assert 'left out backbone.stages.3.blocks.3.token_mixer.' \
        'attention_biases' in result.stdout
    result = run_tool('tools/test.py', config, converted, '--work-dir',
                      tmp_path / 'work')
    assert 'do not match exactly' not in result.stdout
    for metric in (r'coco/bbox_mAP:', r'coco/segm_mAP:'):
        values = metric_values(result.stdout, metric)
        assert values and all(0.0 <= v <= 1.0 for v in values), metric


# ------------------------------------------------------------- recipes --
SEGMENTATION_CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '*', 'fpn_*.py')))


@pytest.mark.parametrize('config', SEGMENTATION_CONFIGS)
def test_segmentation_configs_name_only_the_optimizer_in_use(config):
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert 'SGD' not in cfg.pretty_text
    assert cfg.optimizer == cfg.optim_wrapper.optimizer
    assert cfg.optimizer.type == 'AdamW' and 'momentum' not in cfg.optimizer


def test_efficientformer_recipes_follow_the_original():
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    folder = osp.join(ROOT, 'configs', 'efficientformer')
    for name in ('mask-rcnn_efficientformer-l1_fpn_1x_coco.py',
                 'fpn_efficientformer-l1_8xb4-40k_ade20k-512x512.py',
                 'retinanet_efficientformer-l1_fpn_1x_coco.py'):
        cfg = Config.fromfile(osp.join(folder, name))
        assert cfg.model.backbone.init_cfg.checkpoint == (
            'checkpoints/efficientformer_l1_300d.pth')
    cfg = Config.fromfile(
        osp.join(folder, 'mask-rcnn_efficientformer-l3_fpn_1x_coco.py'))
    warmup = cfg.param_scheduler[0]
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 1e-6,
                                                              500)
    assert cfg.param_scheduler[1].milestones == [8, 11]


def test_missing_release_file_says_where_to_get_it(tmp_path):
    model = EfficientFormer(
        'l1',
        init_cfg=dict(
            type='Pretrained',
            checkpoint=str(tmp_path / 'checkpoints' /
                           'efficientformer_l1_300d.pth')))
    with pytest.raises(
            FileNotFoundError,
            match=r'efficientformer_l1_300d\.pth.*Google Drive'):
        model.init_weights()
