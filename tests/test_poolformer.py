"""PoolFormer: shapes, constructor options, every published weight layout,
and equivalence with timm's independent implementation."""
import re

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_close_to_scale, counting_fused_convs, deployed
from mixer_backbones import PoolFormer
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.ops import cpu

timm = pytest.importorskip('timm')

ARCHS = ['s12', 's24', 's36', 'm36', 'm48']
WIDTHS = {'s': [64, 128, 320, 512], 'm': [96, 192, 384, 768]}
TINY = dict(depths=[1, 1, 2, 1], widths=[8, 16, 24, 32])
ODD = (1, 3, 97, 131)


def stage_outputs(model, x):
    """The four stage outputs before the per-level norms."""
    return model.unit_outputs(x, range(len(model.stages)))


def perturbed_timm(arch, seed=0):
    """A timm PoolFormer with non-trivial weights: layer scales near one
    (not 1e-6) so that every branch shows in the outputs."""
    torch.manual_seed(seed)
    model = timm.create_model(f'poolformer_{arch}', pretrained=False).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'layer_scale' in name:
                param.uniform_(0.5, 1.5)
            elif 'norm' in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


# -- published layouts, written from the descriptions of each release ----
def to_sail(timm_state, dense_norms=False):
    """sail-sg release names: patch_embed.proj, network.{0,2,4,6}.{j},
    network.{1,3,5}.proj, layer_scale_{1,2} of shape [C], norm, head."""
    out = {}
    for key, value in timm_state.items():
        if key.startswith('stem.conv.'):
            out['patch_embed.proj.' + key.split('.')[-1]] = value
            continue
        m = re.match(r'stages\.(\d)\.downsample\.conv\.(\w+)', key)
        if m:
            out[f'network.{2 * int(m[1]) - 1}.proj.{m[2]}'] = value
            continue
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)', key)
        if m:
            rest = m[3]
            ls = re.match(r'layer_scale([12])\.scale', rest)
            if ls:
                rest, value = f'layer_scale_{ls[1]}', value.reshape(-1)
            out[f'network.{2 * int(m[1])}.{m[2]}.{rest}'] = value
            continue
        out[key.replace('head.norm.', 'norm.').replace('head.fc.',
                                                       'head.')] = value
    if dense_norms:  # the original detection/segmentation checkpoints
        del out['norm.weight'], out['norm.bias'], out['head.weight'], out[
            'head.bias']
        for level, width in enumerate(
                timm_state[f'stages.{level}.blocks.0.norm1.weight'].numel()
                for level in range(4)):
            out[f'norm{2 * level}.weight'] = torch.rand(width)
            out[f'norm{2 * level}.bias'] = torch.rand(width)
    return out


def to_mmpretrain(timm_state):
    """mmpretrain: sail-sg names under 'backbone.', the final norm as
    norm6, the classifier as head.fc, wrapped with meta."""
    sail = to_sail(timm_state)
    state = {}
    for key, value in sail.items():
        if key.startswith('norm.'):
            key = 'norm6.' + key[len('norm.'):]
        if key.startswith('head.'):
            state['head.fc.' + key[len('head.'):]] = value
        else:
            state['backbone.' + key] = value
    return {'state_dict': state, 'meta': {'mmcls_version': '0.23.1'}}


def write_layout(layout, timm_state, directory):
    if layout == 'timm-safetensors':
        path = directory / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in timm_state.items()}, path)
    elif layout == 'timm-pth':
        path = directory / 'pytorch_model.bin'
        torch.save(timm_state, path)
    elif layout == 'sail-sg':
        path = directory / 'poolformer.pth.tar'
        torch.save(to_sail(timm_state), path)
    elif layout == 'mmpretrain':
        path = directory / 'poolformer_mmpretrain.pth'
        torch.save(to_mmpretrain(timm_state), path)
    else:
        raise KeyError(layout)
    return str(path)


LAYOUTS = ['timm-safetensors', 'timm-pth', 'sail-sg', 'mmpretrain']


# ------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_arch_shapes_at_odd_size(arch):
    model = PoolFormer(arch).eval()
    with torch.no_grad():
        outs = model(torch.rand(*ODD))
    widths = WIDTHS[arch[0]]
    # Stem 7x7/4 pad 2 then 3x3/2 pad 1: 97x131 -> 24x33 -> 12x17 -> ...
    sizes = [(24, 33), (12, 17), (6, 9), (3, 5)]
    assert [tuple(o.shape) for o in outs] == [(1, w, *s)
                                              for w, s in zip(widths, sizes)]


@pytest.mark.parametrize('arch', ARCHS)
def test_equals_timm(arch):
    reference = perturbed_timm(arch)
    model = PoolFormer(arch).eval()
    converted, layout = PoolFormer.convert_checkpoint(reference.state_dict())
    assert layout == 'timm'
    model.load_converted(converted)
    x = torch.randn(1, 3, 83, 117)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        actual = stage_outputs(model, x)
    assert len(actual) == len(expected) == 4
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_published_layouts_load_and_equal_timm(layout, tmp_path):
    reference = perturbed_timm('s12', seed=1)
    path = write_layout(layout, reference.state_dict(), tmp_path)
    model = PoolFormer(
        's12', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 65, 89)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        actual = stage_outputs(model, x)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


def test_original_dense_checkpoint_loads_output_norms(tmp_path):
    reference = perturbed_timm('s12', seed=2)
    sail = to_sail(reference.state_dict(), dense_norms=True)
    path = tmp_path / 'poolformer_s12_fpn.pth'
    torch.save({'state_dict': sail}, path)
    model = PoolFormer('s12', out_indices=(1, 2, 3))
    report = model.load_pretrained(str(path))
    # The level-0 norm is not built for out_indices (1, 2, 3).
    assert report['ignored'] == ['out_norms.0.weight', 'out_norms.0.bias']
    assert report['new'] == []
    torch.testing.assert_close(model.out_norms['2'].weight,
                               sail['norm4.weight'])


def test_report_lists_new_and_ignored_keys(tmp_path):
    path = write_layout('sail-sg',
                        perturbed_timm('s12').state_dict(), tmp_path)
    model = PoolFormer('s12', out_indices=(0, 3))
    report = model.load_pretrained(path)
    assert report['new'] == [
        'out_norms.0.weight', 'out_norms.0.bias', 'out_norms.3.weight',
        'out_norms.3.bias'
    ]
    assert sorted(report['ignored']) == [
        'head.bias', 'head.weight', 'norm.bias', 'norm.weight'
    ]
    assert report['loaded'] == len(model.state_dict()) - 4


def test_converter_is_idempotent():
    state = perturbed_timm('s12').state_dict()
    once, _ = PoolFormer.convert_checkpoint(state)
    twice, layout = PoolFormer.convert_checkpoint(once)
    assert layout == 'mixer_backbones'
    assert once.keys() == twice.keys()
    assert all(once[k] is twice[k] for k in once)
    for source in (to_sail(state), to_mmpretrain(state)['state_dict']):
        if 'backbone.patch_embed.proj.weight' in source:
            source = {
                k[len('backbone.'):]: v
                for k, v in source.items() if k.startswith('backbone.')
            }
        converted, _ = PoolFormer.convert_checkpoint(source)
        backbone = {k for k in once if not k.startswith(('head.', 'norm.'))}
        assert backbone <= converted.keys()
        for key in backbone:
            torch.testing.assert_close(converted[key], once[key])


@pytest.mark.parametrize('source_arch, target_arch', [('s24', 's12'),
                                                      ('m36', 's36')])
def test_checkpoint_of_another_arch_is_refused(source_arch, target_arch,
                                               tmp_path):
    path = write_layout('timm-safetensors',
                        perturbed_timm(source_arch).state_dict(), tmp_path)
    model = PoolFormer(target_arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match='does not fit') as info:
        model.load_pretrained(path)
    message = str(info.value)
    assert 'nothing was loaded' in message
    assert 'stages.' in message  # names the first mismatches
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkpoint_of_another_model_is_refused(tmp_path):
    other = timm.create_model('convmixer_768_32', pretrained=False)
    path = tmp_path / 'convmixer.pth'
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match='not a PoolFormer checkpoint'):
        PoolFormer('s12').load_pretrained(str(path))


# -- constructor contract -------------------------------------------------
@pytest.mark.parametrize('out_indices, expected',
                         [((0, 1, 2, 3), (0, 1, 2, 3)), ((1, 2, 3), (1, 2, 3)),
                          ([-1], (3, )), (2, (2, )), ((-4, -1), (0, 3))])
def test_out_indices(out_indices, expected):
    argument = out_indices if isinstance(out_indices,
                                         int) else type(out_indices)(
                                             out_indices)
    model = PoolFormer(TINY, out_indices=argument).eval()
    assert argument == out_indices  # the caller's argument is not mutated
    assert model.out_indices == expected
    assert sorted(model.out_norms.keys()) == [str(i) for i in expected]
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [TINY['widths'][i] for i in expected]
    assert [64 // o.shape[-1] for o in outs] == [4 * 2**i for i in expected]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown arch 'b12'.*s12, s24"):
        PoolFormer('b12')
    with pytest.raises(
            ValueError, match=r'out_indices contains 4.*-4 \.\.\. 3'):
        PoolFormer(TINY, out_indices=(1, 4))
    with pytest.raises(ValueError, match=r'frozen_stages=5.*-1'):
        PoolFormer(TINY, frozen_stages=5)
    with pytest.raises(ValueError, match='lacks the keys'):
        PoolFormer(dict(depths=[1, 1]))


def test_bad_inputs_are_named():
    model = PoolFormer(TINY).eval()
    with pytest.raises(ValueError, match='in_channels=3.*4 channels'):
        model(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match='smaller than the minimum 3x3'):
        model(torch.rand(1, 3, 2, 40))
    # The smallest accepted input works.
    assert [o.shape[-2:]
            for o in model(torch.rand(1, 3, 3, 3))] == [(1, 1)] * 4


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = PoolFormer(TINY, frozen_stages=frozen_stages)
    model.train()
    stem_frozen = frozen_stages >= 0
    assert all(p.requires_grad != stem_frozen for p in model.stem.parameters())
    assert model.stem.training != stem_frozen
    for i, stage in enumerate(model.stages):
        frozen = i < frozen_stages
        # norm1's shift cancels in the token mixer and is never trained.
        params = [
            p for n, p in stage.named_parameters()
            if not n.endswith('norm1.bias')
        ]
        assert len(params) > 0
        assert all(p.requires_grad != frozen for p in params)
        assert all(m.training != frozen for m in stage.modules())
        norm = model.out_norms[str(i)]
        assert all(p.requires_grad != frozen for p in norm.parameters())
        assert norm.training != frozen


def test_stages_after_the_last_output_are_frozen():
    # They never get a gradient; DDP must not wait for one.
    model = PoolFormer(TINY, out_indices=(0, 1)).train()
    assert not any(p.requires_grad for p in model.stages[2].parameters())
    assert not any(p.requires_grad for p in model.stages[3].parameters())
    outs = model(torch.rand(1, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters()
               if p.requires_grad)


def test_norm_eval_sets_batchnorms_to_eval():
    model = PoolFormer(TINY, norm_eval=True)
    model.stages[0].blocks[0].norm1 = torch.nn.BatchNorm2d(8)
    model.train()
    assert not model.stages[0].blocks[0].norm1.training
    assert model.stages[0].blocks[0].mlp.training


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = PoolFormer(TINY, drop_path_rate=0.2, layer_scale_init_value=1.)
    checkpointed = PoolFormer(
        TINY, drop_path_rate=0.2, layer_scale_init_value=1., with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 45, 61)
    results = []
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(1)  # same drop-path masks
        outs = model(x)
        sum((o * o).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.requires_grad
        }))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)


def test_drop_path_rate_is_stochastic_in_training_only():
    model = PoolFormer(TINY, drop_path_rate=0.5, layer_scale_init_value=1.)
    rates = [
        block.drop_path.drop_prob for stage in model.stages
        for block in stage.blocks if hasattr(block.drop_path, 'drop_prob')
    ]
    assert rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    x = torch.rand(2, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    first = model(x)[-1]
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x)[-1])
    model.eval()
    torch.testing.assert_close(model(x)[-1], model(x)[-1])


def test_layer_scale_init_value():

    def first_scale(model):
        return model.stages[0].blocks[0].layer_scale1.weight[0].item()

    assert first_scale(PoolFormer('s12')) == pytest.approx(1e-5)
    assert first_scale(PoolFormer('m36')) == pytest.approx(1e-6)
    assert first_scale(PoolFormer(TINY)) == pytest.approx(1e-5)
    assert first_scale(PoolFormer('s12', layer_scale_init_value=0.1)) == (
        pytest.approx(0.1))


def test_offline_converter_tool_matches_loading(tmp_path):
    from conftest import run_tool
    reference = perturbed_timm('s12', seed=3)
    source = write_layout('mmpretrain', reference.state_dict(), tmp_path)
    target = tmp_path / 'converted.safetensors'
    result = run_tool('tools/convert_checkpoint.py', 'poolformer', source,
                      target, '--arch', 's12')
    assert "sail-sg/mmpretrain, under 'backbone.'" in result.stdout
    converted = PoolFormer(
        's12', init_cfg=dict(type='Pretrained', checkpoint=str(target)))
    converted.init_weights()
    original = PoolFormer(
        's12', init_cfg=dict(type='Pretrained', checkpoint=source))
    original.init_weights()
    for key, value in original.state_dict().items():
        if not key.startswith('out_norms.'):
            assert torch.equal(value, converted.state_dict()[key]), key


@pytest.mark.parametrize('deploy', [False, True])
def test_cpu_fast_path_equals_plain_forward(deploy):
    # The pooling mixer as one lerp with GroupNorm's affine and the layer
    # scale folded into a per-sample, per-channel factor: exact algebra.
    torch.manual_seed(0)
    model = PoolFormer(TINY, layer_scale_init_value=0.7).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if re.search(r'norm\d\.(weight|bias)$', name):
                param.uniform_(0.5, 1.5)
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        expected = model(x)
        cpu.optimize(model)
        with counting_fused_convs() as fused_calls:
            actual = model(x)
    if torch.backends.mkldnn.is_available():
        assert fused_calls, 'the fused oneDNN path did not run'
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


@pytest.mark.parametrize('channels_last', [False, True])
def test_switch_to_deploy_keeps_outputs(channels_last):
    torch.manual_seed(0)
    model = PoolFormer(TINY, layer_scale_init_value=0.7).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if re.search(r'norm\d\.(weight|bias)$', name):
                param.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        expected = model(x)
        model, x = deployed(model, x, channels_last)
        with counting_fused_convs() as fused_calls:
            actual = model(x)
    assert model.deployed
    if torch.backends.mkldnn.is_available():
        assert fused_calls, 'the fused oneDNN path did not run'

    # Both layer scales folded away (into norm1's affine and mlp.fc2).
    assert not any('layer_scale' in k for k in model.state_dict())
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
    # Off the fused CPU path (autograd on), the same values.
    for a, e in zip(model(x.requires_grad_()), expected):
        assert_close_to_scale(a.detach(), e)


def test_deploy_weights_kept_in_onednn_layout_follow_new_weights():
    # channels_last deploy form: the fused convs keep their weights in
    # oneDNN's layout; loading other weights must not leave stale copies.
    torch.manual_seed(0)
    first = PoolFormer(TINY, layer_scale_init_value=0.7).eval()
    second = PoolFormer(TINY, layer_scale_init_value=0.3).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        expected = second(x)
        model, x = deployed(first, x, channels_last=True)
        second, _ = deployed(second, x, channels_last=True)
        model(x)  # packs the first model's weights
        model.load_state_dict(second.state_dict())
        actual = model(x)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)
