"""The package imports without the hosts and registers into mmengine's
registry tree so that both hosts find its backbones."""
import subprocess
import sys
import textwrap

import pytest

import mixer_backbones

BACKBONES = ['PoolFormer', 'EfficientFormer', 'ConvMixer']


def test_import_needs_no_host():
    # Make mmdet, mmseg and mmcv unimportable, then import the package and
    # build a backbone.
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('mmdet', 'mmseg', 'mmcv'):
                    raise ImportError(f'blocked host import: {name}')
        sys.meta_path.insert(0, Block())
        import mixer_backbones
        from mixer_backbones import MODELS
        model = MODELS.build(dict(type='PoolFormer', arch='s12'))
        loaded = sorted(m for m in sys.modules
                        if m.split('.')[0] in ('mmdet', 'mmseg', 'mmcv'))
        print('hosts loaded:', loaded)
    """)
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert 'hosts loaded: []' in result.stdout


@pytest.mark.parametrize('name', BACKBONES)
def test_registry_resolves_from_mmengine_root(name):
    from mmengine.registry import MODELS
    assert MODELS.get(f'mixer_backbones.{name}') is getattr(
        mixer_backbones, name)


@pytest.mark.parametrize('host', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', BACKBONES)
def test_registry_resolves_from_host_scope(host, name):
    registry = pytest.importorskip(f'{host}.registry')
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(host):
        assert registry.MODELS.get(f'mixer_backbones.{name}') is getattr(
            mixer_backbones, name)
