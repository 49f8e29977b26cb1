"""The MetaFormer baselines (IdentityFormer, PoolFormerV2, ConvFormer,
CAFormer): equivalence with timm's independent implementation on the same
weights at an odd, non-square size, from every published layout; the
authors' key schema (manifests generated from their code); attention at
dense sizes; the constructor options and the loader's refusals."""
import json
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import assert_close_to_scale
from mixer_backbones import CAFormer, ConvFormer, IdentityFormer, PoolFormerV2
from mixer_backbones.checkpoint import CheckpointError
from mixer_backbones.models.metaformer_baselines import GlobalAttention

timm = pytest.importorskip('timm')

FAMILIES = [IdentityFormer, PoolFormerV2, ConvFormer, CAFormer]
ARCHS = [(family, arch) for family in FAMILIES for arch in family.arch_zoo]
IDS = [f'{family.family_name}-{arch}' for family, arch in ARCHS]
LAYOUTS = ['timm', 'sail-sg', 'mixer_backbones']
SIZE = (197, 263)
MANIFEST = osp.join(
    osp.dirname(osp.abspath(__file__)), 'fixtures', 'manifests',
    'metaformer_baselines.json')


def level_sizes(height, width):
    """The stem's 7x7 stride-4 conv (padding 2), then 3x3 stride-2 convs
    (padding 1)."""
    sizes = [((height - 3) // 4 + 1, (width - 3) // 4 + 1)]
    for _ in range(3):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def timm_model(family, arch):
    """timm's model of ``family``/``arch``; timm has no IdentityFormer
    entry, so its MetaFormer class is built with identity mixers (the
    authors' definition)."""
    if family is IdentityFormer:
        from timm.models.metaformer import GroupNorm1NoBias, MetaFormer
        settings = family.arch_zoo[arch]
        return MetaFormer(
            depths=settings['depths'],
            dims=settings['widths'],
            token_mixers=nn.Identity,
            norm_layers=GroupNorm1NoBias,
            use_mlp_head=False)
    return timm.create_model(family.timm_names[arch], pretrained=False)


def randomize(model, seed):
    """Non-trivial weights: every scale, norm weight and StarReLU scalar
    away from its initial value, so that each shows in the outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if re.search(r'(scale|norm\d?\.weight)$', name):
                param.uniform_(0.5, 1.5)
            elif param.dim() <= 1:
                param.normal_(0, 0.1)
    return model


def reference(family, arch):
    """timm's randomised state dict, the input and timm's four stage
    outputs at ``SIZE``."""
    model = randomize(
        timm_model(family, arch).eval(), ARCHS.index((family, arch)))
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model.forward_intermediates(x, intermediates_only=True)
    return model.state_dict(), x, outs


def to_sail(timm_state):
    """The authors' names (sail-sg/metaformer ``metaformer_baselines.py``):
    ``downsample_layers.0`` the stem with ``post_norm``,
    ``downsample_layers.{i}`` with ``pre_norm``, blocks under
    ``stages.{i}.{j}`` with linear layers (no 1x1 convs), the final norm
    as ``norm`` and the head as ``head``."""
    out = {}
    for key, value in timm_state.items():
        new = re.sub(r'^stem\.norm\.', 'downsample_layers.0.post_norm.', key)
        new = re.sub(r'^stem\.', 'downsample_layers.0.', new)
        new = re.sub(r'^stages\.(\d)\.downsample\.norm\.',
                     r'downsample_layers.\1.pre_norm.', new)
        new = re.sub(r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.',
                     new)
        new = re.sub(r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.', new)
        new = re.sub(r'^head\.norm\.', 'norm.', new)
        new = re.sub(r'^head\.fc\.', 'head.', new)
        if value.dim() == 4 and value.shape[-2:] == (1, 1) and (
                '.mlp.' in new or '.pwconv' in new):
            value = value.flatten(1)
        out[new] = value
    return out


def in_layout(layout, family, timm_state):
    if layout == 'timm':
        return timm_state
    if layout == 'sail-sg':
        return to_sail(timm_state)
    return family.convert_checkpoint(timm_state)[0]


def write_layout(layout, family, arch, timm_state, directory):
    """Write the weights as that layout's release file; the file name
    names the family, as release files do."""
    state = in_layout(layout, family, timm_state)
    stem = f'{family.family_name}_{arch}'
    if layout == 'timm':
        path = directory / f'{stem}.safetensors'
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        path = directory / f'{stem}.pth'
        torch.save(state, path)
    return str(path)


def manifest():
    with open(MANIFEST) as f:
        return json.load(f)['layouts']


def stage_outputs(model, x):
    return model.unit_outputs(x, range(4))


# ------------------------------------------------------- equivalence --
def check_levels(model, x, expected):
    with torch.no_grad():
        outs = stage_outputs(model, x)
        levels = model(x)
    for out, ref, size in zip(outs, expected, level_sizes(*SIZE)):
        assert out.shape[-2:] == size
        assert_close_to_scale(out, ref, 2e-5)
    assert [tuple(o.shape) for o in levels] == [tuple(r.shape) for r in outs]


@pytest.mark.parametrize('family, arch', ARCHS, ids=IDS)
def test_every_arch_equals_timm_from_every_layout(family, arch):
    """Each layout's state dict (timm's, the authors' names written from
    it, this package's) gives timm's stage outputs at every level; the
    authors' names have exactly the keys and shapes of their models."""
    state, x, expected = reference(family, arch)
    schema = manifest()[f'{family.family_name}/{arch}']['keys']
    assert {
        k: list(v.shape)
        for k, v in to_sail(state).items()
    } == {
        k: s
        for k, s, _ in schema
    }
    model = family(arch).eval()
    for layout in LAYOUTS:
        converted, detected = family.convert_checkpoint(
            in_layout(layout, family, state))
        assert detected == layout
        report = model.load_converted(converted, layout=layout)
        assert all(k.startswith('head.') for k in report['ignored'])
        check_levels(model, x, expected)


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.family_name)
def test_release_files_load_through_init_cfg(family, tmp_path):
    """The files themselves (safetensors as on Hugging Face, the authors'
    .pth, a converted file) through ``init_cfg``, as configs load them."""
    arch = next(iter(family.arch_zoo))
    state, x, expected = reference(family, arch)
    for layout in LAYOUTS:
        path = write_layout(layout, family, arch, state, tmp_path)
        model = family(
            arch, init_cfg=dict(type='Pretrained', checkpoint=path)).eval()
        model.init_weights()
        check_levels(model, x, expected)


@pytest.mark.parametrize('name', [
    'identityformer/s12', 'poolformerv2/m48', 'convformer/s18_in21k',
    'caformer/s18', 'caformer/s18_in21k', 'caformer/b36'
])
def test_every_release_schema_loads(name):
    """A state dict with every key of the authors' file (random values)
    loads whole; only the classifier (1k or 21k classes) is left out."""
    family_name, arch = name.split('/')
    family = next(f for f in FAMILIES if f.family_name == family_name)
    torch.manual_seed(0)
    state = {k: torch.randn(shape) for k, shape, _ in manifest()[name]['keys']}
    model = family(arch.split('_')[0])
    converted, layout = family.convert_checkpoint(state)
    report = model.load_converted(converted, layout=layout)
    assert layout == 'sail-sg'
    assert set(
        report['ignored']) == {k
                               for k in converted if k.startswith('head.')}
    own = model.state_dict()
    loaded = [k for k in converted if k in own]
    assert loaded and all(torch.equal(own[k], converted[k]) for k in loaded)


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.family_name)
def test_converter_is_idempotent(family):
    arch = next(iter(family.arch_zoo))
    state = timm_model(family, arch).state_dict()
    for source in (state, to_sail(state)):
        once, layout = family.convert_checkpoint(source)
        assert layout != 'mixer_backbones'
        twice, again = family.convert_checkpoint(once)
        assert again == 'mixer_backbones'
        assert list(twice) == list(once)
        assert all(twice[k] is once[k] for k in once)


# ------------------------------------------------------------ refusals --
def test_another_arch_is_refused_before_loading_anything(tmp_path):
    state = timm_model(ConvFormer, 's18').state_dict()
    path = write_layout('timm', ConvFormer, 's18', state, tmp_path)
    target = tmp_path / 'convformer_s36.safetensors'
    target.write_bytes(open(path, 'rb').read())
    model = ConvFormer('s36')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match='nothing was loaded'):
        model.load_pretrained(str(target))
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_another_family_is_refused(tmp_path):
    # Same names in stages 0-1, attention instead of separable convs in
    # stages 2-3.
    state = timm_model(CAFormer, 's18').state_dict()
    path = write_layout('sail-sg', CAFormer, 's18', state, tmp_path)
    renamed = tmp_path / 'convformer_s18.pth'
    renamed.write_bytes(open(path, 'rb').read())
    with pytest.raises(CheckpointError, match='qkv'):
        ConvFormer('s18').load_pretrained(str(renamed))


def test_a_file_named_for_another_family_is_refused(tmp_path):
    """IdentityFormer's and PoolFormerV2's weights have the same keys and
    shapes: only the name can tell, and it is read."""
    state = IdentityFormer('s12').state_dict()
    for name in ('poolformerv2_s12.pth', 'randformer_s12.pth'):
        path = tmp_path / name
        torch.save(state, path)
        with pytest.raises(CheckpointError, match='named as a'):
            IdentityFormer('s12').load_pretrained(str(path))
    with pytest.raises(CheckpointError, match='named as a poolformerv2'):
        IdentityFormer.convert_checkpoint_file(
            'hf-hub:timm/poolformerv2_s12.sail_in1k')
    path = tmp_path / 'identityformer_s12.pth'
    torch.save(state, path)
    assert IdentityFormer('s12').load_pretrained(str(path))['loaded']


# ------------------------------------------------------------ attention --
def explicit_attention(module, x):
    """Softmax attention written out with the (tokens x tokens) matrix."""
    batch, height, width, channels = x.shape
    qkv = module.qkv(x.reshape(batch, -1, channels)).reshape(
        batch, height * width, 3, module.num_heads,
        module.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = (q @ k.transpose(-2, -1) * module.head_dim**-0.5).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, height, width, -1)
    return module.proj(out)


@pytest.mark.parametrize('size', [(1, 1), (3, 7), (13, 17), (25, 42)])
def test_attention_at_any_grid(size):
    torch.manual_seed(0)
    module = GlobalAttention(64).eval()
    x = torch.randn(2, *size, 64)
    with torch.no_grad():
        assert_close_to_scale(module(x), explicit_attention(module, x), 1e-5)


def test_attention_goes_through_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append(tuple(q.shape))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', spy)
    model = CAFormer(dict(depths=[1, 1, 1, 1], widths=[8, 16, 64, 96]))
    with torch.no_grad():
        model(torch.rand(1, 3, 101, 75))
    # Heads of 32 channels over every token of stages 2 and 3.
    assert calls == [(1, 2, 7 * 5, 32), (1, 3, 4 * 3, 32)]


def test_caformer_runs_at_dense_sizes():
    model = CAFormer(dict(depths=[1, 1, 1, 1], widths=[8, 16, 32, 64]))
    for size in [(512, 512), (500, 701)]:
        x = torch.rand(1, 3, *size, requires_grad=True)
        outs = model(x)
        sum(o.mean() for o in outs).backward()
        assert [tuple(o.shape[-2:]) for o in outs] == level_sizes(*size)
        assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------ options --
@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.family_name)
def test_published_details(family):
    model = family(next(iter(family.arch_zoo)))
    block = model.stages[2].blocks[0]
    # Residual scales in stages 2-3 only, no layer scales, bias-free norms
    # and MLP, StarReLU.
    assert isinstance(model.stages[0].blocks[0].res_scale1, nn.Identity)
    assert block.res_scale1.weight.shape == (model.unit_channels[2], )
    assert isinstance(block.layer_scale1, nn.Identity)
    assert getattr(block.norm1, 'bias', None) is None
    assert model.stem.norm.bias is None and model.stem.norm.eps == 1e-6
    assert block.mlp.fc1.bias is None
    assert type(block.mlp.act).__name__ == 'StarReLU'
    assert model.stages[0].downsample.__class__ is nn.Identity
    assert model.stages[1].downsample.norm.bias is None


def test_options():
    x = torch.rand(2, 3, 67, 45)
    tiny = dict(depths=[1, 2, 1, 1], widths=[8, 16, 32, 64])
    model = CAFormer(
        tiny,
        out_indices=(-1, 1),
        frozen_stages=2,
        drop_path_rate=0.2,
        act_cfg=dict(type='GELU'),
        layer_scale_init_value=1e-5,
        res_scale_init_values=(None, 1., None, 1.)).train()
    assert model.out_indices == (1, 3) and model.out_channels == [16, 64]
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert isinstance(model.stages[1].blocks[0].mlp.act, nn.GELU)
    assert model.stages[3].blocks[0].drop_path.drop_prob == pytest.approx(0.2)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 9, 6), (2, 64, 3, 2)]
    with pytest.raises(ValueError, match='res_scale_init_values'):
        ConvFormer(tiny, res_scale_init_values=(None, 1.))
    with pytest.raises(ValueError, match='4 entries'):
        ConvFormer(dict(depths=[1, 1, 1], widths=[8, 16, 32]))
    with pytest.raises(ValueError, match='unknown arch'):
        PoolFormerV2('s18')


def test_with_cp_keeps_outputs_and_gradients():
    tiny = dict(depths=[1, 2, 1, 2], widths=[8, 16, 32, 64])
    x = torch.randn(2, 3, 61, 83)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = CAFormer(tiny, with_cp=with_cp).train()
        outs = model(x)
        sum(o.pow(2).mean() for o in outs).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain)


def test_deploy_form_is_exact():
    torch.manual_seed(0)
    model = randomize(
        PoolFormerV2(
            dict(depths=[1, 1, 2, 1], widths=[8, 16, 32, 64]),
            layer_scale_init_value=1e-2).eval(), 0)
    x = torch.randn(1, 3, 45, 77)
    with torch.no_grad():
        before = model(x)
        after = model.switch_to_deploy()(x)
    for a, b in zip(after, before):
        assert_close_to_scale(a, b, 1e-6)


def test_cpu_pointwise_path_keeps_outputs_and_gradients():
    """``ops.cpu.optimize`` runs the channels-last pointwise layers as 1x1
    convolutions: same outputs and gradients, also in training."""
    from mixer_backbones.ops import cpu
    tiny = dict(depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
    x = torch.randn(2, 3, 61, 83)
    results = []
    for optimized in (False, True):
        torch.manual_seed(0)
        model = CAFormer(tiny).train()
        if optimized:
            cpu.optimize(model)
            swapped = [
                m for m in model.modules()
                if type(m).__name__ == '_PointwiseLinear'
            ]
            assert len(swapped) == 4 * 4  # 2 per MLP, 2 per mixer
        outs = model(x)
        sum(o.pow(2).mean() for o in outs).backward()
        results.append((outs, [p.grad.clone() for p in model.parameters()]))
    (outs, grads), (outs_cpu, grads_cpu) = results
    for a, b in zip(outs_cpu, outs):
        assert_close_to_scale(a, b, 1e-5)
    for a, b in zip(grads_cpu, grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_sample_norm_in_either_layout():
    from mixer_backbones.models.metaformer_baselines import SampleNorm
    x = torch.randn(2, 5, 7, 9)
    nchw, last = SampleNorm(5), SampleNorm(5, channels_last=True)
    with torch.no_grad():
        nchw.weight.uniform_(0.5, 1.5)
        last.weight.copy_(nchw.weight)
        expected = F.group_norm(x, 1, nchw.weight, eps=1e-6)
        assert_close_to_scale(nchw(x), expected, 1e-6)
        assert_close_to_scale(
            last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), expected, 1e-6)
