"""Reading checkpoints: never runs code from a file, names the file that
cannot be read, and loads what mmengine's own checkpoints carry."""
import os
import pickle

import numpy as np
import pytest
import torch

from mixer_backbones import PoolFormer
from mixer_backbones.checkpoint import (CheckpointError, extract_state_dict,
                                        load_checkpoint_file)

TINY = dict(depths=[1, 1, 1, 1], widths=[8, 8, 8, 8])
MARKER = 'mixer_backbones_code_ran'


class RunsCode:
    """Unpickling this calls os.system: what a malicious file would do."""

    def __reduce__(self):
        return (os.system, (f'touch {MARKER}', ))


def test_file_that_carries_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': RunsCode()}, path)
    with pytest.raises(CheckpointError,
                       match='refusing to load.*evil.pth.*posix.system'):
        load_checkpoint_file(str(path))
    assert not (tmp_path / MARKER).exists()
    model = PoolFormer(
        TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='refusing'):
        model.init_weights()
    assert not (tmp_path / MARKER).exists()


def test_missing_file_is_named(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(missing)


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_damaged_file_is_named(tmp_path, damage):
    path = tmp_path / f'{damage}.pth'
    torch.save(PoolFormer(TINY).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes({
        'truncated': data[:len(data) // 2],
        'garbage': b'not a checkpoint at all' * 10,
        'empty': b''
    }[damage])
    with pytest.raises(CheckpointError,
                       match=rf'{damage}.pth.*\(truncated or corrupt\?\)'):
        load_checkpoint_file(str(path))


def test_random_bytes_are_corrupt_not_code(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(bytes(
        torch.randint(0, 256, (5000, ), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0)).tolist()))
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint_file(str(path))


def test_damaged_safetensors_is_named(tmp_path):
    path = tmp_path / 'broken.safetensors'
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1')
    with pytest.raises(CheckpointError, match='broken.safetensors'):
        load_checkpoint_file(str(path))


def test_mmengine_checkpoint_contents_load(tmp_path):
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5)
    path = tmp_path / 'iter_2.pth'
    torch.save(
        dict(
            meta=dict(
                epoch=1, iter=2, seed=np.int64(3), score=np.float64(0.5)),
            state_dict=PoolFormer(TINY).state_dict(),
            message_hub=dict(log_scalars={'train/loss': buffer}),
            history=np.arange(4.)), path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 2.0
    assert loaded['meta']['seed'] == 3
    # torch's own loader (what mmengine's runner calls) accepts it too.
    torch.load(path, weights_only=True)


def test_history_buffer_pickles_without_callables():
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.0)
    assert b'getattr' not in pickle.dumps(buffer)
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.statistics('max') == 1.0


def test_state_dict_is_found_in_wrappers():
    tensors = {'a': torch.zeros(1)}
    for wrapped in (tensors, {
            'state_dict': tensors
    }, {
            'model': tensors
    }, {
            'state_dict': {
                'module.a': torch.zeros(1)
            }
    }):
        assert list(extract_state_dict(wrapped)) == ['a']
    with pytest.raises(CheckpointError, match='no tensors'):
        extract_state_dict({'epoch': 3})


# -- init_cfg in every form goes through the all-or-nothing loader --------
SMALL = dict(depths=[1, 1, 1, 1], widths=[8, 16, 24, 32])


def random_state(arch=SMALL, seed=0):
    """A PoolFormer state dict with every tensor random (layer scales
    too), so that a weight left at its initialisation shows."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(value.shape, generator=generator)
        for key, value in PoolFormer(arch).state_dict().items()
    }


def to_timm(state):
    """The same weights under timm's PoolFormer names: the MLP and norm
    names are shared with this package, the stem, downsamples and layer
    scales are not (what a partial, name-matching load would miss)."""
    out = {}
    for key, value in state.items():
        if key.startswith('out_norms.'):
            continue
        key = key.replace('stem.', 'stem.conv.', 1)
        key = key.replace('.downsample.', '.downsample.conv.')
        if '.layer_scale' in key:
            key = key.replace('.weight', '.scale')
            value = value.reshape(-1, 1, 1)
        out[key] = value
    return out


def config_list(path):
    from mmengine.config import Config
    return Config(
        dict(init_cfg=[dict(type='Pretrained', checkpoint=path)])).init_cfg


@pytest.mark.parametrize('form', ['dict', 'list', 'tuple', 'config list'])
def test_pretrained_in_any_init_cfg_form_loads_everything(tmp_path, form):
    state = random_state()
    path = str(tmp_path / 'timm.pth')
    torch.save(to_timm(state), path)
    entry = dict(type='Pretrained', checkpoint=path)
    init_cfg = {
        'dict': entry,
        'list': [entry],
        'tuple': (entry, ),
        'config list': config_list(path)
    }[form]
    model = PoolFormer(SMALL, init_cfg=init_cfg)
    model.init_weights()
    loaded = model.state_dict()
    checked = [k for k in state if not k.startswith('out_norms.')]
    assert 'stem.weight' in checked and any('layer_scale' in k
                                            for k in checked)
    for key in checked:
        assert torch.equal(loaded[key], state[key]), key


def test_pretrained_after_other_initialisers_in_a_list(tmp_path):
    state = random_state()
    path = str(tmp_path / 'timm.safetensors')
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in to_timm(state).items()}, path)
    model = PoolFormer(
        SMALL,
        init_cfg=[
            dict(type='Constant', val=0.5, bias=0.25, layer='GroupNorm'),
            dict(type='Pretrained', checkpoint=path)
        ])
    model.init_weights()
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith('out_norms.'):  # new: the other initialiser's
            expected = 0.5 if key.endswith('weight') else 0.25
            assert torch.all(loaded[key] == expected), key
        else:  # pretrained wins over the Constant init of the block norms
            assert torch.equal(loaded[key], value), key


def test_list_pretrained_that_does_not_fit_is_refused(tmp_path):
    """A checkpoint of another arch: mmengine's loader would load the
    tensors whose names and shapes match (the first stages' norms and
    MLPs) and skip the rest with a warning; nothing may be loaded."""
    other = to_timm(random_state(dict(SMALL, widths=[8, 16, 24, 40])))
    path = str(tmp_path / 'other.pth')
    torch.save(other, path)
    model = PoolFormer(
        SMALL, init_cfg=[dict(type='Pretrained', checkpoint=path)])
    with pytest.raises(CheckpointError, match='shape mismatches'):
        model.init_weights()
    own = model.state_dict()
    fitting = [
        k for k, v in other.items() if k in own and own[k].shape == v.shape
    ]
    assert len(fitting) > 10
    for key in fitting:
        assert not torch.equal(own[key], other[key]), key


def test_pretrained_prefix_as_mmengine_writes_it(tmp_path):
    state = random_state()
    detector = {f'backbone.{k}': v for k, v in to_timm(state).items()}
    detector['neck.lateral.weight'] = torch.zeros(4, 4)
    path = str(tmp_path / 'detector.pth')
    torch.save({'state_dict': detector, 'meta': {}}, path)
    model = PoolFormer(
        SMALL,
        init_cfg=[dict(type='Pretrained', checkpoint=path, prefix='backbone')])
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.weight'], state['stem.weight'])


@pytest.mark.parametrize('init_cfg, error, message', [
    (dict(type='Pretrained', checkpoint='x.pth', strict=False), ValueError,
     r"unknown keys \['strict'\]; valid keys: \['type', 'checkpoint', "
     r"'prefix', 'map_location'\]"),
    ([dict(type='Pretrained', checkpoint='a.pth'),
      dict(type='Pretrained', checkpoint='b.pth')], ValueError,
     '2 Pretrained entries'),
    ([dict(type='Constant', val=1, override=dict(
        type='Pretrained', name='stem', checkpoint='x.pth'))], ValueError,
     'Pretrained override'),
    (dict(type='Pretrained'), ValueError, 'needs checkpoint='),
    ('x.pth', TypeError, 'init_cfg must be a dict, a list of dicts'),
    (['x.pth'], TypeError, 'each init_cfg entry must be a dict'),
])
def test_init_cfg_that_would_load_non_strictly_is_refused(
        init_cfg, error, message):
    with pytest.raises(error, match=message):
        PoolFormer(SMALL, init_cfg=init_cfg)


# -- non-finite checkpoints -----------------------------------------------
@pytest.mark.parametrize('layout', ['mixer_backbones', 'timm'])
def test_checkpoint_with_nan_or_inf_is_refused(tmp_path, layout):
    state = random_state()
    state['stem.weight'][0, 0, 0, :2] = float('nan')
    state['stages.2.blocks.0.layer_scale1.weight'][3] = float('inf')
    path = str(tmp_path / 'diverged.pth')
    torch.save(state if layout == 'mixer_backbones' else to_timm(state),
               path)
    model = PoolFormer(
        SMALL, init_cfg=dict(type='Pretrained', checkpoint=path))
    stem = 'stem.weight' if layout == 'mixer_backbones' else 'stem.conv.weight'
    message = (rf'diverged.pth.*2 tensors hold NaN or Inf.*{stem} \(2 NaN, '
               r'0 Inf of 1176\).*layer_scale1.* \(0 NaN, 1 Inf of 24\)')
    with pytest.raises(CheckpointError, match=message):
        model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        model.load_pretrained(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(CheckpointError, match=message):  # the converter
        converter().main(['poolformer', path, str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()


# -- the converter's output -----------------------------------------------
def converter():
    """tools/convert_checkpoint.py as a module (in-process: fast)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'convert_checkpoint',
        os.path.join(os.path.dirname(os.path.dirname(__file__)), 'tools',
                     'convert_checkpoint.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def timm_file(tmp_path):
    path = tmp_path / 'timm.pth'
    torch.save(to_timm(random_state()), path)
    return path


def test_converter_refuses_to_overwrite_without_force(tmp_path, timm_file):
    tool = converter()
    target = tmp_path / 'out.pth'
    target.write_bytes(b'keep me')
    with pytest.raises(SystemExit, match=r'out.pth.*exists.*--force'):
        tool.main(['poolformer', str(timm_file), str(target)])
    assert target.read_bytes() == b'keep me'
    tool.main(['poolformer', str(timm_file), str(target), '--force'])
    converted = load_checkpoint_file(str(target))
    assert torch.equal(converted['stem.weight'],
                       random_state()['stem.weight'])


@pytest.mark.parametrize('spelling', ['same', 'dot', 'symlink', 'hardlink'])
def test_converter_never_writes_onto_its_input(tmp_path, timm_file,
                                               monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    original = timm_file.read_bytes()
    target = {'same': str(timm_file), 'dot': './timm.pth'}.get(spelling)
    if target is None:
        target = str(tmp_path / 'link.pth')
        (os.symlink if spelling == 'symlink' else os.link)(timm_file, target)
    with pytest.raises(SystemExit, match='is the input'):
        converter().main(['poolformer', 'timm.pth', target, '--force'])
    assert timm_file.read_bytes() == original


@pytest.mark.parametrize('name', ['out.safetensors', 'out.pth'])
@pytest.mark.parametrize('umask', [0o022, 0o027], ids=['022', '027'])
def test_converter_writes_usual_permissions_atomically(
        tmp_path, timm_file, name, umask):
    target = tmp_path / 'out' / name
    target.parent.mkdir()
    previous = os.umask(umask)
    try:
        converter().main(['poolformer', str(timm_file), str(target)])
    finally:
        os.umask(previous)
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert os.listdir(target.parent) == [name]  # no temporary file left


def test_failed_save_leaves_the_old_file_and_no_partial(tmp_path):
    from mixer_backbones.checkpoint import save_checkpoint_file
    target = tmp_path / 'model.safetensors'
    target.write_bytes(b'previous')
    with pytest.raises(Exception):
        save_checkpoint_file({'a': 'not a tensor'}, str(target))
    assert target.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['model.safetensors']


def test_converter_output_in_a_directory_or_missing_one(tmp_path, timm_file):
    tool = converter()
    with pytest.raises(SystemExit, match='is a directory'):
        tool.main(['poolformer', str(timm_file), str(tmp_path)])
    with pytest.raises(SystemExit, match='nowhere.*does not exist'):
        tool.main(['poolformer', str(timm_file),
                   str(tmp_path / 'nowhere' / 'out.pth')])


# -- offline and local paths ----------------------------------------------
UNREACHABLE = 'http://127.0.0.1:9/poolformer_tiny.pth'


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    return tmp_path / 'torch_home'


def test_unreachable_url_is_named_and_fails_fast(torch_home):
    import time
    start = time.monotonic()
    model = PoolFormer(
        SMALL, init_cfg=[dict(type='Pretrained', checkpoint=UNREACHABLE)])
    with pytest.raises(CheckpointError,
                       match=rf'cannot download checkpoint '
                       rf"'{UNREACHABLE}'.*offline"):
        model.init_weights()
    assert time.monotonic() - start < 10
    # Nothing half-written in the cache.
    cache = torch_home / 'checkpoints'
    assert not cache.exists() or os.listdir(cache) == []


def test_hf_hub_offline_url_uses_the_cache_only(torch_home, monkeypatch):
    from mixer_backbones.checkpoint import url_cache_path
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(CheckpointError,
                       match=rf"'{UNREACHABLE}': HF_HUB_OFFLINE is set"):
        load_checkpoint_file(UNREACHABLE)
    cached = url_cache_path(UNREACHABLE)
    os.makedirs(os.path.dirname(cached))
    state = random_state()
    torch.save(to_timm(state), cached)
    model = PoolFormer(
        SMALL, init_cfg=dict(type='Pretrained', checkpoint=UNREACHABLE))
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.weight'], state['stem.weight'])


def test_hf_hub_offline_names_the_repo_at_once(tmp_path, monkeypatch):
    pytest.importorskip('huggingface_hub')
    import time
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf_home'))
    start = time.monotonic()
    with pytest.raises(
            CheckpointError,
            match=r"'weights.safetensors' of the Hugging Face hub "
            r"repository 'someone/tiny-poolformer'.*HF_HUB_OFFLINE"):
        load_checkpoint_file(
            'hf-hub:someone/tiny-poolformer:weights.safetensors')
    assert time.monotonic() - start < 5


def test_directory_is_reported_as_a_directory(tmp_path):
    (tmp_path / 'model.safetensors').write_bytes(b'')
    with pytest.raises(IsADirectoryError,
                       match=r"is a directory, not a file; pass a file in "
                       r"it: \['model.safetensors'\]"):
        load_checkpoint_file(str(tmp_path))


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    state = random_state()
    torch.save(to_timm(state), tmp_path / 'tiny.pth')
    model = PoolFormer(
        SMALL, init_cfg=dict(type='Pretrained', checkpoint='~/tiny.pth'))
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.weight'], state['stem.weight'])
    with pytest.raises(FileNotFoundError,
                       match=r"'~/absent.pth' \(.*/absent.pth\)"):
        load_checkpoint_file('~/absent.pth')


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """The hub's client pointed at a port nobody listens on, with an empty
    cache of its own (what a machine without internet sees)."""
    constants = pytest.importorskip('huggingface_hub.constants')
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE',
                        'http://127.0.0.1:9/{repo_id}/resolve/{revision}/'
                        '{filename}')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    return tmp_path / 'hub'


def test_unreachable_hub_names_the_repo_at_once(unreachable_hub):
    import time
    start = time.monotonic()
    with pytest.raises(CheckpointError,
                       match=r"'model.safetensors' of the Hugging Face hub "
                       r"repository 'someone/tiny-poolformer'.*cannot be "
                       r'reached.*offline'):
        load_checkpoint_file('hf-hub:someone/tiny-poolformer')
    assert time.monotonic() - start < 5


def test_unreachable_hub_uses_the_cached_file(unreachable_hub):
    from safetensors.torch import save_file
    snapshot = (unreachable_hub / 'models--someone--tiny-poolformer' /
                'snapshots' / ('0' * 40))
    snapshot.mkdir(parents=True)
    (unreachable_hub / 'models--someone--tiny-poolformer' / 'refs').mkdir()
    (unreachable_hub / 'models--someone--tiny-poolformer' / 'refs' /
     'main').write_text('0' * 40)
    state = random_state()
    save_file({k: v.contiguous()
               for k, v in to_timm(state).items()},
              str(snapshot / 'model.safetensors'))
    model = PoolFormer(
        SMALL,
        init_cfg=dict(
            type='Pretrained', checkpoint='hf-hub:someone/tiny-poolformer'))
    model.init_weights()
    assert torch.equal(model.state_dict()['stem.weight'], state['stem.weight'])


def test_large_finite_values_are_not_taken_for_inf():
    from mixer_backbones.checkpoint import check_finite
    large = torch.full((10, ), 3e38)  # its sum overflows float32
    check_finite({'a': large, 'half': torch.full((8, ), 6e4).half()})
    large[7] = float('-inf')
    with pytest.raises(CheckpointError, match=r'a \(0 NaN, 1 Inf of 10\)'):
        check_finite({'a': large})
