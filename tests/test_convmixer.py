"""ConvMixer: equivalence with timm on every arch and published layout, the
stride-4/8/16/32 pyramid, memory (with_cp), freezing, and conv-BN folding."""
import re

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import assert_close_to_scale, counting_fused_convs
from mixer_backbones import ConvMixer, PoolFormer
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.models.convmixer import ChannelAffine, pyramid_size
from mixer_backbones.ops import cpu
from mixer_backbones.ops.cpu import DepthwiseConv2d

timm = pytest.importorskip('timm')
from timm.models.convmixer import ConvMixer as TimmConvMixer  # noqa: E402

TIMM_NAMES = ConvMixer.timm_names
TINY = dict(dim=32, depth=4, kernel_size=3, patch_size=7, act='gelu')
POOLFORMER_TINY = dict(depths=[1, 1, 1, 1], widths=[8, 8, 8, 8])


def perturb_batchnorms(model, seed=0, signed=False):
    """Non-trivial BatchNorm affine parameters and running statistics, so
    that a misplaced or mis-folded norm shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.running_mean.copy_(
                    torch.randn(n, generator=generator) * 0.3)
                module.running_var.copy_(
                    torch.rand(n, generator=generator) * 1.5 + 0.5)
                low = -1.5 if signed else 0.5
                module.weight.copy_(
                    torch.rand(n, generator=generator) * (1.5 - low) + low)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.num_batches_tracked.fill_(7)
    return model


def tiny_timm(act=nn.GELU, seed=0, signed=False, depth=4):
    torch.manual_seed(seed)
    model = TimmConvMixer(
        dim=32,
        depth=depth,
        kernel_size=3,
        patch_size=7,
        num_classes=10,
        act_layer=act)
    return perturb_batchnorms(model.eval(), seed, signed)


def timm_block_outputs(model, x, indices):
    """Outputs of timm's blocks ``indices``, run one by one."""
    outputs, h = [], model.stem(x)
    for i, block in enumerate(model.blocks):
        h = block(h)
        if i in indices:
            outputs.append(h)
    assert len(outputs) == len(indices)
    return outputs


# -- published layouts, written from the descriptions of each release ----
def to_locuslab(timm_state, depth):
    """One nn.Sequential: 0 patch conv, 2 BN, block k at 3+k, the
    classifier at depth+5."""
    out = {}
    for key, value in timm_state.items():
        m = re.match(r'stem\.(\d)\.(.*)', key)
        if m:
            out[f'{m[1]}.{m[2]}'] = value
            continue
        m = re.match(r'blocks\.(\d+)\.(.*)', key)
        if m:
            out[f'{3 + int(m[1])}.{m[2]}'] = value
            continue
        assert key.startswith('head.'), key
        out[f'{depth + 5}.{key[len("head."):]}'] = value
    return out


def to_mmpretrain(timm_state):
    """backbone.stem.{0,2}, backbone.stages.{k}.*, head.fc.*, with meta."""
    state = {}
    for key, value in timm_state.items():
        if key.startswith('head.'):
            state['head.fc.' + key[len('head.'):]] = value
        else:
            state['backbone.' + key.replace('blocks.', 'stages.', 1)] = value
    return {'state_dict': state, 'meta': {'mmpretrain_version': '1.2.0'}}


def write_layout(layout, timm_state, depth, directory):
    if layout == 'timm-safetensors':
        path = directory / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in timm_state.items()}, path)
    elif layout == 'locuslab':
        path = directory / 'convmixer_32_4_ks3_p7.pth.tar'
        torch.save(to_locuslab(timm_state, depth), path)
    elif layout == 'mmpretrain':
        path = directory / 'convmixer_mmpretrain.pth'
        torch.save(to_mmpretrain(timm_state), path)
    else:
        raise KeyError(layout)
    return str(path)


LAYOUTS = ['timm-safetensors', 'locuslab', 'mmpretrain']


# ------------------------------------------------- equivalence with timm --
@pytest.mark.parametrize('arch', list(TIMM_NAMES))
def test_real_arch_blocks_equal_timm(arch):
    torch.manual_seed(0)
    reference = perturb_batchnorms(
        timm.create_model(TIMM_NAMES[arch], pretrained=False).eval())
    model = ConvMixer(arch, pyramid=None).eval()
    depth = ConvMixer.arch_zoo[arch]['depth']
    assert model.out_indices == tuple(depth * (i + 1) // 4 - 1
                                      for i in range(4))
    assert model.out_indices[-1] == depth - 1
    converted, layout = ConvMixer.convert_checkpoint(reference.state_dict())
    assert layout == 'timm'
    report = model.load_converted(converted)
    assert report['ignored'] == ['head.weight', 'head.bias']
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        expected = timm_block_outputs(reference, x, model.out_indices)
        actual = model(x)
    patch = ConvMixer.arch_zoo[arch]['patch_size']
    for a, e in zip(actual, expected):
        assert a.shape == (1, model.arch_settings['dim'], 112 // patch,
                           112 // patch)
        error = (a - e).abs().max().item()
        print(f'{arch}: max abs difference vs timm {error:.3g} '
              f'(max |value| {e.abs().max().item():.3g})')
        assert_close_to_scale(a, e)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_published_layouts_load_and_equal_timm(layout, tmp_path):
    reference = tiny_timm(seed=1)
    path = write_layout(layout, reference.state_dict(), TINY['depth'],
                        tmp_path)
    model = ConvMixer(
        TINY,
        pyramid=None,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 61, 45)
    with torch.no_grad():
        expected = timm_block_outputs(reference, x, (0, 1, 2, 3))
        actual = model(x)
    assert len(actual) == 4
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
    # The running statistics came from the file, not a default.
    assert model.blocks[2].channel_mixer.act_norm.norm.num_batches_tracked \
        == 7


def test_converter_is_idempotent_and_layouts_agree():
    state = tiny_timm(seed=2).state_dict()
    once, _ = ConvMixer.convert_checkpoint(state)
    twice, layout = ConvMixer.convert_checkpoint(once)
    assert layout == 'mixer_backbones'
    assert once.keys() == twice.keys()
    assert all(once[k] is twice[k] for k in once)
    own = set(ConvMixer(TINY, pyramid=None).state_dict())
    assert own | {'head.weight', 'head.bias'} == set(once)
    mmpretrain = to_mmpretrain(state)['state_dict']
    stripped = {
        k[len('backbone.'):]: v
        for k, v in mmpretrain.items() if k.startswith('backbone.')
    }
    sources = {
        'locuslab': to_locuslab(state, TINY['depth']),
        'mmpretrain': mmpretrain,  # as a raw file, with the prefix
    }
    for expected_layout, source in sources.items():
        converted, layout = ConvMixer.convert_checkpoint(source)
        assert layout == expected_layout
        for key in own:
            assert torch.equal(converted[key], once[key]), (layout, key)
        assert set(converted) - own == ({
            'head.weight', 'head.bias'
        } if layout == 'locuslab' else {'head.fc.weight', 'head.fc.bias'})
    # What load_pretrained passes after removing the 'backbone.' prefix.
    converted, layout = ConvMixer.convert_checkpoint(stripped)
    assert layout == 'mmpretrain' and own == set(converted)


def test_unknown_layout_is_refused(tmp_path):
    poolformer = PoolFormer(POOLFORMER_TINY).state_dict()
    path = tmp_path / 'poolformer.pth'
    torch.save(poolformer, path)
    with pytest.raises(CheckpointError) as info:
        ConvMixer(TINY).load_pretrained(str(path))
    message = str(info.value)
    for word in ('not a ConvMixer checkpoint', 'timm', 'locuslab',
                 'mmpretrain', 'first keys', 'stem.weight'):
        assert word in message


def test_checkpoint_of_another_arch_is_refused(tmp_path):
    source = timm.create_model('convmixer_768_32', pretrained=False)
    path = write_layout('timm-safetensors', source.state_dict(), 32, tmp_path)
    del source
    model = ConvMixer('1024_20')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match='does not fit') as info:
        model.load_pretrained(path)
    message = str(info.value)
    assert 'nothing was loaded' in message
    # Names the first mismatches and the blocks 1024_20 does not have.
    assert re.search(r'246 shape mismatches.*\(768,[^)]*\) vs \(1024,',
                     message)
    assert '168 checkpoint tensors fit nowhere' in message
    assert 'blocks.20.' in message
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_pyramid_keys_are_reported_new(tmp_path):
    path = write_layout('locuslab',
                        tiny_timm().state_dict(), TINY['depth'], tmp_path)
    model = ConvMixer(TINY)
    report = model.load_pretrained(path)
    assert report['layout'] == 'locuslab'
    assert report['new'] and all(
        k.startswith('pyramid.') or k.endswith('num_batches_tracked')
        for k in report['new'])
    assert any(k.startswith('pyramid.3.') for k in report['new'])
    assert report['ignored'] == ['head.weight', 'head.bias']


def test_dense_checkpoint_loads_with_or_without_pyramid(tmp_path):
    dense = ConvMixer(TINY, out_channels=16)
    perturb_batchnorms(dense)
    path = tmp_path / 'retinanet_convmixer.pth'
    torch.save(
        {
            'state_dict': {
                'backbone.' + k: v
                for k, v in dense.state_dict().items()
            }
        }, path)
    again = ConvMixer(TINY, out_channels=16)
    report = again.load_pretrained(str(path))
    assert report['new'] == [] and report['ignored'] == []
    x = torch.rand(1, 3, 40, 40)
    for a, b in zip(dense.eval()(x), again.eval()(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    raw = ConvMixer(TINY, pyramid=None)
    report = raw.load_pretrained(str(path))
    assert report['ignored'] and all(
        k.startswith('pyramid.') for k in report['ignored'])
    with pytest.raises(CheckpointError, match='shape mismatches'):
        ConvMixer(TINY, out_channels=8).load_pretrained(str(path))


# ------------------------------------------------------------ pyramid ----
SIZES = {
    (256, 256): [(64, 64), (32, 32), (16, 16), (8, 8)],
    (97, 131): [(24, 33), (12, 17), (6, 9), (3, 5)],
    (250, 333): [(62, 83), (31, 42), (16, 21), (8, 11)],
}


@pytest.mark.parametrize('mode', ['interpolate', 'deconv'])
@pytest.mark.parametrize('patch_size', [7, 14])
@pytest.mark.parametrize('size', list(SIZES))
def test_pyramid_strides_and_shapes(size, patch_size, mode):
    model = ConvMixer(
        dict(TINY, patch_size=patch_size),
        pyramid=dict(mode=mode),
        out_channels=(8, 16, 24, 32)).eval()
    assert model.out_channels == [8, 16, 24, 32]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert [tuple(o.shape) for o in outs
            ] == [(1, c, *s) for c, s in zip((8, 16, 24, 32), SIZES[size])]
    assert [pyramid_size(size[0], s)
            for s in (4, 8, 16, 32)] == [s[0] for s in SIZES[size]]
    if mode == 'deconv':  # learned upsampling only below the patch stride
        ups = [len(level.upsample) // 3 for level in model.pyramid]
        assert ups == ([1, 0, 0, 0] if patch_size == 7 else [2, 1, 0, 0])


def test_pyramid_sizes_match_hierarchical_backbones():
    poolformer = PoolFormer(POOLFORMER_TINY).eval()
    convmixer = ConvMixer(TINY).eval()
    for size in [(64, 64), (97, 131), (250, 333), (7, 9)]:
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            assert [o.shape[-2:] for o in convmixer(x)
                    ] == [o.shape[-2:] for o in poolformer(x)], size


def test_pyramid_options():
    model = ConvMixer(TINY, out_indices=-1).eval()  # one block, all levels
    assert model.out_channels == [256] * 4 and len(model.pyramid) == 4
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(256, 16, 16), (256, 8, 8),
                                           (256, 4, 4), (256, 2, 2)]
    two = ConvMixer(
        TINY,
        out_indices=(1, 3),
        pyramid=dict(strides=(8, 16), norm='bn'),
        out_channels=48)
    assert two.out_channels == [48, 48]
    assert isinstance(two.pyramid[0].norm, nn.BatchNorm2d)
    assert [o.shape[-1] for o in two(torch.rand(2, 3, 64, 64))] == [8, 4]
    raw = ConvMixer(TINY, pyramid=None)
    assert raw.out_channels == [32] * 4 and raw.pyramid is None
    assert not any('pyramid' in k for k in raw.state_dict())
    assert ConvMixer(
        TINY, pyramid=None, out_channels=32).out_channels == [32] * 4


def test_bad_arguments_are_named():
    with pytest.raises(
            ValueError, match=r"unknown arch '768_16'.*1536_20, 768_32"):
        ConvMixer('768_16')
    with pytest.raises(ValueError, match=r'lacks the keys \[.act.\]'):
        ConvMixer(dict(dim=8, depth=2, kernel_size=3, patch_size=7))
    with pytest.raises(ValueError, match='unknown activation'):
        ConvMixer(dict(TINY, act='swish'))
    with pytest.raises(
            ValueError,
            match=r'out_indices contains 4.*4 blocks.*-4 \.\.\. 3'):
        ConvMixer(TINY, out_indices=(1, 4))
    with pytest.raises(ValueError, match='name a block twice'):
        ConvMixer(TINY, out_indices=(0, 1, 2, -1, 3))
    with pytest.raises(ValueError, match=r'frozen_stages=5.*all 4 blocks'):
        ConvMixer(TINY, frozen_stages=5)
    with pytest.raises(ValueError, match='3 blocks.*one block per level'):
        ConvMixer(TINY, out_indices=(0, 1, 2))
    with pytest.raises(ValueError, match='needs a pyramid'):
        ConvMixer(TINY, pyramid=None, out_channels=256)
    with pytest.raises(ValueError, match='unknown pyramid options'):
        ConvMixer(TINY, pyramid=dict(levels=4))
    with pytest.raises(ValueError, match='powers of two'):
        ConvMixer(TINY, pyramid=dict(strides=(4, 8, 12, 32)))
    with pytest.raises(ValueError, match="'gn', 'bn' or None"):
        ConvMixer(TINY, pyramid=dict(norm='ln'))


def test_bad_inputs_are_named():
    model = ConvMixer(TINY).eval()
    with pytest.raises(ValueError, match='smaller than the minimum 7x7'):
        model(torch.rand(1, 3, 6, 40))
    with pytest.raises(ValueError, match='in_channels=3.*1 channels'):
        model(torch.rand(1, 1, 32, 32))
    assert [o.shape[-2:] for o in model(torch.rand(1, 3, 7, 7))] == [(2, 2),
                                                                     (1, 1),
                                                                     (1, 1),
                                                                     (1, 1)]


def test_registry_builds_from_host_scope():
    from mmengine.registry import MODELS
    model = MODELS.build(
        dict(type='mixer_backbones.ConvMixer', arch=TINY, out_channels=64))
    assert isinstance(model, ConvMixer) and model.out_channels == [64] * 4


# ----------------------------------------------- training-time options --
@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 3, 4])
def test_frozen_stages(frozen_stages):
    model = ConvMixer(TINY, frozen_stages=frozen_stages)
    model.train()
    stem_frozen = frozen_stages >= 0
    assert all(p.requires_grad != stem_frozen for p in model.stem.parameters())
    assert all(m.training != stem_frozen for m in model.stem.modules())
    for i, block in enumerate(model.blocks):
        frozen = i < frozen_stages
        assert all(p.requires_grad != frozen for p in block.parameters())
        assert all(m.training != frozen for m in block.modules())
    # The pyramid is new: never frozen.
    assert all(p.requires_grad for p in model.pyramid.parameters())
    assert model.pyramid.training
    outs = model(torch.rand(2, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    assert all(
        (p.grad is not None) == p.requires_grad for p in model.parameters())


def test_blocks_after_the_last_output_are_frozen():
    model = ConvMixer(TINY, out_indices=(0, 1), pyramid=None).train()
    assert not any(p.requires_grad for p in model.blocks[2].parameters())
    assert not any(p.requires_grad for p in model.blocks[3].parameters())
    assert all(p.requires_grad for p in model.blocks[1].parameters())


def test_norm_eval_sets_every_batchnorm_to_eval():
    model = ConvMixer(TINY, norm_eval=True, pyramid=dict(norm='bn')).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(norms) == 1 + 2 * TINY['depth'] + 4
    assert not any(norm.training for norm in norms)
    assert model.blocks[0].token_mixer.conv.training
    assert model.pyramid[0].projection.training
    before = norms[0].running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    assert torch.equal(norms[0].running_mean, before)


def _train_step(model, x, seed=1):
    model.train()
    torch.manual_seed(seed)  # same drop-path masks
    outs = model(x)
    sum((o * o).mean() for o in outs).backward()
    grads = {
        n: p.grad.clone()
        for n, p in model.named_parameters() if p.requires_grad
    }
    stats = {
        n: b.clone()
        for n, b in model.named_buffers()
        if re.search(r'running_(mean|var)|num_batches_tracked', n)
    }
    return [o.detach() for o in outs], grads, stats


@pytest.mark.parametrize('pyramid', [None, dict(norm='bn', mode='deconv')])
def test_with_cp_same_outputs_gradients_and_statistics(pyramid):
    torch.manual_seed(0)
    kwargs = dict(drop_path_rate=0.3, pyramid=pyramid)
    plain = ConvMixer(TINY, **kwargs)
    checkpointed = ConvMixer(TINY, with_cp=True, **kwargs)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 47, 61)
    outs_a, grads_a, stats_a = _train_step(plain, x)
    outs_b, grads_b, stats_b = _train_step(checkpointed, x)
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    assert len(stats_a) >= 3 * (1 + 2 * TINY['depth'])
    for name in stats_a:
        assert torch.equal(stats_a[name], stats_b[name]), name
    # Updated once per step, not twice.
    assert all(stats_b[n].item() == 1 for n in stats_b
               if n.endswith('num_batches_tracked'))


@pytest.mark.parametrize('shape, kernel', [((2, 8, 5, 7), 3),
                                           ((3, 16, 13, 9), 9),
                                           ((1, 4, 3, 3), 7),
                                           ((2, 6, 6, 5), 4)])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.filterwarnings('ignore:Using padding=.same. with even kernel')
def test_depthwise_backward_equals_conv2d(shape, kernel, channels_last):
    torch.manual_seed(0)
    conv = DepthwiseConv2d(
        shape[1], shape[1], kernel, groups=shape[1], padding='same')
    reference = nn.Conv2d(
        shape[1], shape[1], kernel, groups=shape[1], padding='same')
    reference.load_state_dict(conv.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_()
    grad = torch.randn(shape)
    out = conv(x)
    # Odd kernels take the two-depthwise-conv backward; even ones (their
    # 'same' padding is asymmetric) the plain one.
    assert (type(out.grad_fn).__name__ == '_DepthwiseConvBackward') == (
        kernel % 2 == 1)
    actual = torch.autograd.grad(out, (x, conv.weight, conv.bias), grad)
    expected_out = reference(x)
    expected = torch.autograd.grad(
        expected_out, (x, reference.weight, reference.bias), grad)
    torch.testing.assert_close(out, expected_out, rtol=0, atol=0)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
    with torch.no_grad():  # inference: the plain convolution
        assert conv(x).grad_fn is None


@pytest.mark.parametrize('optimized', [False, True])
def test_training_gradients_equal_timm(optimized):
    reference = tiny_timm(seed=2).train()
    model = ConvMixer(TINY, out_indices=(3, ), pyramid=None).train()
    model.load_converted(
        ConvMixer.convert_checkpoint(reference.state_dict())[0])
    if optimized:  # the depthwise convs' backward as two convolutions
        cpu.optimize(model)
        assert sum(isinstance(m, DepthwiseConv2d)
                   for m in model.modules()) == TINY['depth']
    x = torch.randn(2, 3, 47, 61)
    ours = model(x)[0]
    theirs = reference.forward_features(x)
    assert_close_to_scale(ours, theirs)
    (ours * theirs.detach()).sum().backward()
    (theirs * theirs.detach()).sum().backward()
    converted = ConvMixer.convert_checkpoint(
        {k: p.grad for k, p in reference.named_parameters()
         if p.grad is not None})[0]
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert converted.keys() - {'head.weight', 'head.bias'} == grads.keys()
    for name, grad in grads.items():
        assert_close_to_scale(grad, converted[name])


def saved_for_backward_bytes(model, x):
    """Bytes kept for backward by one forward: the tensors autograd saves
    plus, with ``with_cp``, the block inputs the checkpoints hold, each
    storage counted once."""
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    def hold_input(module, args):
        pack(args[0])

    handles = []
    if model.with_cp:
        handles = [
            block.register_forward_pre_hook(hold_input)
            for block in model.blocks
        ]
        if model.pyramid is not None:
            handles += [
                level.register_forward_pre_hook(hold_input)
                for level in model.pyramid
            ]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = model(x)
    for handle in handles:
        handle.remove()
    sum(o.float().mean() for o in outs).backward()  # the graph is usable
    return sum(seen.values())


@pytest.mark.parametrize('pyramid', [None, dict()])
def test_with_cp_saves_memory(pyramid):
    arch = dict(dim=64, depth=8, kernel_size=9, patch_size=7, act='gelu')
    torch.manual_seed(0)
    plain = ConvMixer(arch, pyramid=pyramid).train()
    checkpointed = ConvMixer(arch, pyramid=pyramid, with_cp=True).train()
    x = torch.rand(1, 3, 224, 224)
    full = saved_for_backward_bytes(plain, x)
    reduced = saved_for_backward_bytes(checkpointed, x)
    ratio = reduced / full
    print(f'saved for backward, pyramid={pyramid}: {full / 2**20:.2f} MiB '
          f'plain, {reduced / 2**20:.2f} MiB with_cp, ratio {ratio:.3f}')
    assert full > 8 * 64 * 32 * 32 * 4 * 4  # several maps per block
    assert ratio <= 0.4


def test_autocast_bf16_forward_backward():
    model = ConvMixer(TINY, with_cp=True).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.rand(2, 3, 64, 64))
        assert all(o.dtype == torch.bfloat16 for o in outs)
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(
        g is not None and torch.isfinite(g).all() for g in grads)


def test_drop_path_rate_is_stochastic_in_training_only():
    model = ConvMixer(TINY, drop_path_rate=0.5, pyramid=None)
    rates = [
        block.drop_path.drop_prob for block in model.blocks
        if hasattr(block.drop_path, 'drop_prob')
    ]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.5)
    x = torch.rand(4, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    first = model(x)[-1]
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x)[-1])
    model.eval()
    torch.testing.assert_close(model(x)[-1], model(x)[-1])


# ---------------------------------------------------- conv-BN folding ----
def _loaded_tiny(act, signed=True, **kwargs):
    reference = tiny_timm(
        act=nn.ReLU if act == 'relu' else nn.GELU, seed=3, signed=signed)
    model = ConvMixer(dict(TINY, act=act), out_indices=(0, 1, 2, 3), **kwargs)
    model.load_converted(
        ConvMixer.convert_checkpoint(reference.state_dict())[0])
    return reference, model.eval()


@pytest.mark.parametrize('act', ['gelu', 'relu'])
def test_mmcv_fuse_conv_bn_keeps_outputs(act):
    cnn = pytest.importorskip('mmcv.cnn')
    reference, model = _loaded_tiny(act)
    x = torch.randn(2, 3, 45, 59)
    with torch.no_grad():
        before = model(x)
        fused = cnn.fuse_conv_bn(model)
        after = fused(x)
        # The check can fail: on timm's layout the same call folds each
        # post-activation BatchNorm into the conv before the activation.
        expected = timm_block_outputs(reference, x, (3, ))[0]
        broken = timm_block_outputs(cnn.fuse_conv_bn(reference), x, (3, ))[0]
    assert (broken - expected).abs().max() > 1e-2 * expected.abs().max()
    assert sum(isinstance(m, _BatchNorm) for m in fused.modules()) == 9
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('act', ['gelu', 'relu'])
@pytest.mark.parametrize('signed', [False, True])
def test_switch_to_deploy_is_exact(act, signed):
    _, model = _loaded_tiny(act, signed=signed, pyramid=None)
    x = torch.randn(2, 3, 45, 59)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        plain = model(x)
        cpu.optimize(model)
        with counting_fused_convs() as fused_calls:
            after = model(x)
    if torch.backends.mkldnn.is_available():
        # The stem and each 1x1 conv run with their activation fused.
        assert len(fused_calls) == 1 + TINY['depth']
    # Off the fused CPU path (autograd on), the same values.
    for a, b in zip(before, model(x.requires_grad_())):
        assert_close_to_scale(b.detach(), a)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    affines = [m for m in model.modules() if isinstance(m, ChannelAffine)]
    assert len(affines) == 1 + 2 * TINY['depth']
    # The token mixers' shifts went into the channel mixers' biases.
    assert all(block.token_mixer.act_norm.norm.shift is None
               for block in model.blocks)
    if act == 'relu' and not signed:  # all scales folded into the convs
        assert all(m.scale is None for m in affines)
    for a, b, c in zip(before, after, plain):
        assert_close_to_scale(b, a)
        assert_close_to_scale(c, a)
    assert model.switch_to_deploy() is model  # idempotent


def test_single_tiny_training_image_is_explained():
    model = ConvMixer(
        dict(dim=16, depth=2, kernel_size=3, patch_size=7, act='gelu'))
    with pytest.raises(ValueError, match=r'batch of one 13x13 image.*14'):
        model(torch.rand(1, 3, 13, 13))
    model(torch.rand(1, 3, 14, 7))
    model(torch.rand(2, 3, 13, 13))
    ConvMixer(
        dict(dim=16, depth=2, kernel_size=3, patch_size=7, act='gelu'),
        norm_eval=True).train()(torch.rand(1, 3, 13, 13))
