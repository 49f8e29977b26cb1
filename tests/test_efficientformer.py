"""EfficientFormer: shapes at any input size, the resampled attention bias,
constructor options, every published weight layout and equivalence with
timm's independent implementation."""
import copy
import functools
import math
import re

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from conftest import assert_close_to_scale, deployed
from mixer_backbones import MODELS, EfficientFormer
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.models import MetaFormerBlock
from mixer_backbones.models.efficientformer import (Meta3DBlock,
                                                    RelativeBiasAttention)

timm = pytest.importorskip('timm')

ARCHS = ['l1', 'l3', 'l7']
WIDTHS = {
    'l1': [48, 96, 224, 448],
    'l3': [64, 128, 320, 512],
    'l7': [96, 192, 384, 768],
}
DEPTHS = {'l1': [3, 2, 6, 4], 'l3': [4, 4, 12, 6], 'l7': [6, 6, 18, 8]}
# Two Meta3D blocks, so that the flatten entry and several attention
# blocks are exercised while the model stays tiny.
TINY = dict(depths=[1, 1, 2, 3], widths=[8, 16, 24, 32], vit_num=2)
LAYOUTS = ['timm', 'snap-research', 'mmpretrain']
# Max abs errors vs timm, per (arch, layout), printed at the end.
ERRORS = {}


def ceil_sizes(height, width):
    return [(math.ceil(height / s), math.ceil(width / s))
            for s in (4, 8, 16, 32)]


def stage_outputs(model, x):
    """The four stage outputs before the per-level norms."""
    return model.unit_outputs(x, range(len(model.stages)))


def randomize(model, seed=0):
    """Non-trivial weights: layer scales near one (not 1e-5) so every
    branch shows, random BatchNorm statistics and affine parameters, and
    random attention-bias tables."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if re.search(r'(gamma|layer_scale\d\.weight)$', name):
                param.uniform_(0.5, 1.5)
            elif name.endswith('attention_biases'):
                param.normal_()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


@functools.lru_cache(maxsize=None)
def timm_reference(arch):
    """A perturbed timm model, its state dict and its four stage outputs
    at 224x224 (computed once per arch)."""
    model = timm.create_model(f'efficientformer_{arch}', pretrained=False)
    randomize(model.eval(), seed=ARCHS.index(arch))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model.forward_intermediates(x, intermediates_only=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, x, outs


# -- published layouts, written from the descriptions of each release ----
def to_snap(timm_state):
    """snap-research names: patch_embed.{0,1,3,4}, blocks
    network.{0,2,4,6}.{j} (flatten entry keeps its index),
    network.{1,3,5}.{proj,norm}, layer_scale_{1,2}, dist_head."""
    stem = {'conv1': 0, 'norm1': 1, 'conv2': 3, 'norm2': 4}
    out = {}
    for key, value in timm_state.items():
        m = re.match(r'stem\.(\w+)\.(.*)', key)
        if m:
            out[f'patch_embed.{stem[m[1]]}.{m[2]}'] = value
            continue
        m = re.match(r'stages\.(\d)\.downsample\.(conv|norm)\.(.*)', key)
        if m:
            layer = 'proj' if m[2] == 'conv' else 'norm'
            out[f'network.{2 * int(m[1]) - 1}.{layer}.{m[3]}'] = value
            continue
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)', key)
        if m:
            rest = re.sub(r'^ls([12])\.gamma$', r'layer_scale_\1', m[3])
            out[f'network.{2 * int(m[1])}.{m[2]}.{rest}'] = value
            continue
        out[key.replace('head_dist.', 'dist_head.')] = value
    return out


def to_mmpretrain(timm_state):
    """mmpretrain: ConvModule stem patch_embed.{0,1}.{conv,bn}; each
    downsample at index 0 of its stage network.{s} (blocks shift by one
    from stage 1 on), ls{1,2}.weight, final norm3, all under 'backbone.';
    the classifier as head.head / head.dist_head."""
    out = {}
    for key, value in timm_state.items():
        m = re.match(r'stem\.(conv|norm)([12])\.(.*)', key)
        if m:
            layer = 'conv' if m[1] == 'conv' else 'bn'
            out[f'backbone.patch_embed.{int(m[2]) - 1}.{layer}.{m[3]}'] = (
                value)
            continue
        m = re.match(r'stages\.(\d)\.downsample\.(conv|norm)\.(.*)', key)
        if m:
            layer = 'conv' if m[2] == 'conv' else 'bn'
            out[f'backbone.network.{m[1]}.0.{layer}.{m[3]}'] = value
            continue
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)', key)
        if m:
            stage, index = int(m[1]), int(m[2]) + (int(m[1]) > 0)
            rest = re.sub(r'^ls([12])\.gamma$', r'ls\1.weight', m[3])
            out[f'backbone.network.{stage}.{index}.{rest}'] = value
            continue
        if key.startswith('norm.'):
            out['backbone.norm3.' + key[len('norm.'):]] = value
        elif key.startswith('head_dist.'):
            out['head.dist_head.' + key[len('head_dist.'):]] = value
        else:
            out['head.' + key] = value  # head.* -> head.head.*
    return {'state_dict': out, 'meta': {'mmpretrain_version': '1.2.0'}}


def write_layout(layout, timm_state, directory):
    if layout == 'timm':
        path = directory / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in timm_state.items()}, path)
    elif layout == 'snap-research':
        path = directory / 'efficientformer_300d.pth'
        torch.save({'model': to_snap(timm_state), 'epoch': 299}, path)
    elif layout == 'mmpretrain':
        path = directory / 'efficientformer_mmpretrain.pth'
        torch.save(to_mmpretrain(timm_state), path)
    else:
        raise KeyError(layout)
    return str(path)


def tiny(**kwargs):
    torch.manual_seed(0)
    return randomize(EfficientFormer(TINY, **kwargs))


# ------------------------------------------------------------ shapes ----
@pytest.mark.parametrize('arch', ARCHS)
def test_arch_builds_with_pyramid_shapes(arch):
    model = EfficientFormer(arch).eval()
    assert model.out_channels == WIDTHS[arch]
    blocks = model.stages[3].blocks
    vit_num = {'l1': 1, 'l3': 4, 'l7': 8}[arch]
    assert [
        type(b) for b in blocks
    ] == [MetaFormerBlock] * (DEPTHS[arch][3] - vit_num) + [Meta3DBlock
                                                            ] * vit_num
    assert [len(s.blocks) for s in model.stages] == DEPTHS[arch]
    # Layer scale defaults to the arch's value.
    expected_scale = 1e-6 if arch == 'l7' else 1e-5
    assert model.stages[0].blocks[0].layer_scale1.weight[0].item() == (
        pytest.approx(expected_scale))
    sizes = [(161, 237)] if arch != 'l1' else [(224, 224), (161, 237)]
    for height, width in sizes:
        with torch.no_grad():
            outs = model(torch.rand(1, 3, height, width))
        assert [tuple(o.shape) for o in outs] == [
            (1, c, *s) for c, s in zip(WIDTHS[arch], ceil_sizes(height, width))
        ]


@pytest.mark.parametrize('size', [(224, 224), (512, 512), (800, 1216),
                                  (333, 517)])
def test_l1_runs_at_dense_sizes(size):
    model = EfficientFormer('l1').eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == ceil_sizes(*size)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('size', [(1, 1), (32, 64), (33, 250), (97, 45)])
def test_tiny_inputs_and_odd_grids(size):
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, *s) for c, s in zip(TINY['widths'], ceil_sizes(*size))
    ]
    with torch.no_grad():
        features = stage_outputs(model, torch.rand(1, 3, *size))
    assert all(f.is_contiguous() for f in features)


def test_registry_and_out_indices():
    model = MODELS.build(
        dict(
            type='mixer_backbones.EfficientFormer',
            arch=TINY,
            out_indices=(-1, 1)))
    assert isinstance(model, EfficientFormer)
    assert model.out_indices == (1, 3)
    assert sorted(model.out_norms) == ['1', '3']
    assert all(
        isinstance(n, nn.GroupNorm) and n.num_groups == 1
        for n in model.out_norms.values())
    with torch.no_grad():
        outs = model.eval()(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 8, 12), (1, 32, 2, 3)]


def test_invalid_arguments():
    with pytest.raises(ValueError, match='valid archs: l1, l3, l7'):
        EfficientFormer('l2')
    with pytest.raises(ValueError, match='vit_num'):
        EfficientFormer(dict(TINY, vit_num=4))
    with pytest.raises(ValueError, match='lacks the keys'):
        EfficientFormer(dict(depths=[1, 1, 1, 1], widths=[8, 8, 8, 8]))
    with pytest.raises(ValueError, match='bias_mode'):
        EfficientFormer(TINY, bias_mode='nearest')


def test_vit_num_zero_and_whole_stage():
    for vit_num in (0, 3):
        model = EfficientFormer(dict(TINY, vit_num=vit_num)).eval()
        kinds = [type(b) for b in model.stages[3].blocks]
        assert kinds.count(Meta3DBlock) == vit_num
        with torch.no_grad():
            out = model(torch.rand(1, 3, 40, 72))[-1]
        assert tuple(out.shape) == (1, 32, 2, 3)


def test_no_index_buffer_in_state_dict():
    state = EfficientFormer(TINY).state_dict()
    assert not [k for k in state if 'idxs' in k]
    assert state['stages.3.blocks.1.token_mixer.attention_biases'].shape == (
        8, 49)


# ------------------------------------------------- attention bias -------
def test_bias_at_7x7_equals_the_pretrained_indexing():
    reference = timm.create_model('efficientformer_l1', pretrained=False)
    timm_attention = reference.stages[3].blocks[4].token_mixer
    attention = RelativeBiasAttention(448)
    with torch.no_grad():
        timm_attention.attention_biases.normal_()
        attention.attention_biases.copy_(timm_attention.attention_biases)
    expected = timm_attention.attention_biases[:, timm_attention.
                                               attention_bias_idxs]
    for mode in ('bicubic', 'bilinear', 'clamp'):
        attention.bias_mode = mode
        assert torch.equal(attention.relative_bias(7, 7), expected)


@pytest.mark.parametrize('mode', ['bicubic', 'bilinear'])
def test_resampled_bias_keeps_offset_zero_and_the_largest(mode):
    attention = RelativeBiasAttention(32, bias_mode=mode)
    with torch.no_grad():
        attention.attention_biases.normal_()
    table = attention.attention_biases.view(8, 7, 7)
    for height, width in [(25, 38), (16, 16), (1, 2), (3, 5)]:
        grid = attention.offset_bias(height, width)
        assert grid.shape == (8, height, width)
        torch.testing.assert_close(grid[:, 0, 0], table[:, 0, 0])
        if height > 1 and width > 1:
            torch.testing.assert_close(grid[:, -1, -1], table[:, 6, 6])
            torch.testing.assert_close(grid[:, 0, -1], table[:, 0, 6])
        bias = attention.relative_bias(height, width)
        n = height * width
        assert bias.shape == (8, n, n)
        # token (y, x) = index y * width + x; symmetric in the offsets
        torch.testing.assert_close(bias, bias.transpose(1, 2))
        if height > 1 and width > 1:
            torch.testing.assert_close(bias[:, 0, n - 1], grid[:, -1, -1])
            torch.testing.assert_close(bias[:, width + 1, 0], grid[:, 1, 1])


def test_clamped_bias_keeps_pixel_offsets():
    attention = RelativeBiasAttention(32, bias_mode='clamp')
    with torch.no_grad():
        attention.attention_biases.normal_()
    table = attention.attention_biases.view(8, 7, 7)
    grid = attention.offset_bias(3, 10)
    assert torch.equal(grid[:, :, :7], table[:, :3, :7])
    assert torch.equal(grid[:, :, 9], table[:, :3, 6])


def test_pretrained_bias_changes_outputs_at_other_sizes():
    model = tiny().eval()
    x = torch.rand(1, 3, 200, 260)  # 7x9 grid in the last stage
    with torch.no_grad():
        before = model(x)[-1]
        for block in model.stages[3].blocks[-2:]:
            block.token_mixer.attention_biases.zero_()
        after = model(x)[-1]
    assert (before - after).abs().max() > 1e-3


def test_bias_cache_in_eval_and_gradients_in_training():
    model = tiny().eval()
    attention = model.stages[3].blocks[-1].token_mixer
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        first = model(x)[-1]
        assert len(attention._bias_cache) == 1
        second = model(x)[-1]
        assert torch.equal(first, second)
        attention.attention_biases.mul_(2)  # in-place edits invalidate it
        third = model(x)[-1]
    assert len(attention._bias_cache) == 2
    assert not torch.equal(first, third)
    model.train()
    out = model(x)[-1]
    # Not a plain sum: the output GroupNorm makes that constant.
    (out * torch.randn_like(out)).sum().backward()
    grad = attention.attention_biases.grad
    assert grad is not None and grad.abs().sum() > 0


def test_torch_compile_fullgraph():
    model = tiny().eval()
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        actual = compiled(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


# ------------------------------------------------------------ weights ---
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('arch', ARCHS)
def test_published_layouts_equal_timm(arch, layout, tmp_path):
    state, x, expected = timm_reference(arch)
    path = write_layout(layout, state, tmp_path)
    model = EfficientFormer(
        arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        actual = stage_outputs(model, x)
    assert len(actual) == len(expected) == 4
    error = max((a - e).abs().max().item() for a, e in zip(actual, expected))
    ERRORS[(arch, layout)] = error
    print(f'{arch} {layout}: max abs difference vs timm {error:.3g}')
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_converter_agrees_across_layouts_and_is_idempotent(layout):
    state, _, _ = timm_reference('l1')
    reference, _ = EfficientFormer.convert_checkpoint(state)
    source = {
        'timm': state,
        'snap-research': to_snap(state),
        'mmpretrain': {
            k[len('backbone.'):]: v
            for k, v in to_mmpretrain(state)['state_dict'].items()
            if k.startswith('backbone.')
        },
    }[layout]
    if layout == 'mmpretrain':  # its classifier is outside 'backbone.'
        reference = {
            k: v
            for k, v in reference.items() if not k.startswith('head')
        }
    converted, detected = EfficientFormer.convert_checkpoint(source)
    assert detected == layout
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)
    again, detected = EfficientFormer.convert_checkpoint(converted)
    assert detected == 'mixer_backbones'
    assert again == converted
    model = EfficientFormer('l1')
    own = set(model.state_dict())
    assert not [k for k in converted if 'idxs' in k]
    assert own - set(converted) == {
        k
        for k in own if k.startswith('out_norms.')
    }
    classifier = ('norm', ) if layout == 'mmpretrain' else ('head',
                                                            'head_dist',
                                                            'norm')
    assert sorted(set(converted) - own) == sorted(f'{p}.{w}'
                                                  for p in classifier
                                                  for w in ('weight', 'bias'))
    scales = [k for k in converted if 'layer_scale' in k]
    assert scales and all(converted[k].dim() == 1 for k in scales)


def test_report_lists_new_and_ignored(tmp_path):
    state, _, _ = timm_reference('l1')
    path = write_layout('snap-research', state, tmp_path)
    model = EfficientFormer('l1', out_indices=(1, 2))
    report = model.load_pretrained(path)
    assert report['layout'] == 'snap-research'
    assert report['new'] == [
        'out_norms.1.weight', 'out_norms.1.bias', 'out_norms.2.weight',
        'out_norms.2.bias'
    ]
    assert sorted(report['ignored']) == sorted(f'{p}.{w}'
                                               for p in ('head', 'head_dist',
                                                         'norm')
                                               for w in ('weight', 'bias'))


def test_dense_checkpoints_give_output_norms():
    state, _, _ = timm_reference('l1')
    snap = {
        k: v
        for k, v in to_snap(state).items()
        if not k.startswith(('norm.', 'head.', 'dist_head.'))
    }
    mmpretrain = {
        k[len('backbone.'):]: v
        for k, v in to_mmpretrain(state)['state_dict'].items()
        if k.startswith('backbone.') and not k.startswith('backbone.norm3')
    }
    for level, width in enumerate(WIDTHS['l1']):
        snap[f'norm{2 * level}.weight'] = torch.full((width, ), level + 1.)
        snap[f'norm{2 * level}.bias'] = torch.zeros(width)
        mmpretrain[f'norm{level}.weight'] = torch.full((width, ), level + 1.)
        mmpretrain[f'norm{level}.bias'] = torch.zeros(width)
    for source in (snap, mmpretrain):
        converted, _ = EfficientFormer.convert_checkpoint(source)
        model = EfficientFormer('l1')
        report = model.load_converted(converted)
        assert report['new'] == [] and report['ignored'] == []
        for level in range(4):
            assert torch.equal(model.out_norms[str(level)].weight,
                               torch.full((WIDTHS['l1'][level], ), level + 1.))


def test_unknown_layout_raises():
    with pytest.raises(CheckpointError, match='snap-research.*mmpretrain'):
        EfficientFormer.convert_checkpoint({'conv.weight': torch.zeros(1)})


def test_other_arch_is_refused_before_loading(tmp_path):
    state, _, _ = timm_reference('l1')
    path = write_layout('timm', state, tmp_path)
    model = EfficientFormer(
        dict(depths=[4, 4, 12, 6], widths=[64, 128, 320, 512], vit_num=4))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(CheckpointError, match='does not fit'):
        model.load_pretrained(path)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------ options ---
def test_frozen_stages():
    model = EfficientFormer(TINY, frozen_stages=2)
    model.train()
    for module in [
            model.stem, model.stages[0], model.stages[1], model.out_norms['0'],
            model.out_norms['1']
    ]:
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    for module in [model.stages[2], model.stages[3], model.out_norms['3']]:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())


def test_norm_eval_touches_only_batchnorms():
    model = EfficientFormer(TINY, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 + 3 + 2 * 5  # stem, downsamples, Meta4D MLPs
    assert not any(m.training for m in norms)
    others = [
        m for m in model.modules()
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm))
    ]
    assert others and all(m.training for m in others)
    mean = model.stem.norm1.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert torch.equal(model.stem.norm1.running_mean, mean)


def test_with_cp_same_outputs_gradients_and_statistics():
    plain = tiny().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.with_cp = True
    x = torch.rand(2, 3, 96, 128)
    outs = [m(x) for m in (plain, checkpointed)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    # Random projections: the output GroupNorms make sums and sums of
    # squares constant.
    weights = [torch.randn_like(o) for o in outs[0]]
    for out in outs:
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    buffers = dict(checkpointed.named_buffers())
    tracked = 0
    for name, value in plain.named_buffers():
        torch.testing.assert_close(value, buffers[name], msg=name)
        if name.endswith('num_batches_tracked'):
            assert value.item() == 1, name
            tracked += 1
    assert tracked == 15


def test_drop_path_rate():
    model = EfficientFormer(TINY, drop_path_rate=0.3)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
        for b in s.blocks
    ]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3)
    assert rates == sorted(rates) and len(rates) == sum(TINY['depths'])
    randomize(model)
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        reference = model(x)[-1]
        plain = copy.deepcopy(model)
        for stage in plain.stages:
            for block in stage.blocks:
                block.drop_path = nn.Identity()
        assert torch.equal(plain(x)[-1], reference)
        model.train()
        torch.manual_seed(0)
        dropped = model(x)[-1]
    assert not torch.allclose(dropped, plain.train()(x)[-1])


@pytest.mark.parametrize('channels_last', [False, True])
def test_switch_to_deploy(channels_last):
    model = randomize(tiny()).eval()
    x = torch.rand(2, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        model, x = deployed(model, x, channels_last)
        actual = model(x)
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
    assert set(k for k in model.state_dict() if 'running' in k) == set()
    # With autograd on, the deploy form takes the unfused path: same values.
    with torch.enable_grad():
        for a, e in zip(model(x.requires_grad_()), expected):
            assert_close_to_scale(a.detach(), e)


def test_mmcv_fuse_conv_bn():
    cnn = pytest.importorskip('mmcv.cnn')
    model = tiny().eval()
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = model(x)
        fused = cnn.fuse_conv_bn(copy.deepcopy(model))
        actual = fused(x)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


def test_autocast_keeps_half_precision():
    model = tiny().eval()
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        expected = stage_outputs(model, x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            actual = stage_outputs(model, x)
    assert all(a.dtype == torch.bfloat16 for a in actual)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a.float(), e, tol=5e-2)


def test_max_differences_vs_timm_were_measured():
    """Runs last in this file: prints the errors the equivalence tests
    reached (pytest -s shows them)."""
    if not ERRORS:
        pytest.skip('equivalence tests did not run in this session')
    for (arch, layout), error in sorted(ERRORS.items()):
        print(f'max abs difference vs timm, {arch} {layout}: {error:.3g}')
    assert all(error < 1e-3 for error in ERRORS.values())


def test_single_tiny_training_image_is_explained():
    model = tiny()
    with pytest.raises(ValueError, match=r'batch of one 32x20 image.*33'):
        model(torch.rand(1, 3, 32, 20))
    model(torch.rand(1, 3, 33, 20))  # a 2x1 map at stride 32
    model(torch.rand(2, 3, 32, 20))
    model.eval()(torch.rand(1, 3, 32, 20))
