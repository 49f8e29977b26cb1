"""The package imports without the hosts and registers into mmengine's
registry tree so that both hosts find its backbones."""
import os
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


FAULTS_PER_STEP = textwrap.dedent("""
    import platform, resource
    import torch
    from mixer_backbones.engine import keep_freed_memory
    applied = keep_freed_memory()
    def step():  # a 48 MiB activation, written, then freed
        torch.empty(12 << 20).fill_(1)
    faults = []
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt -
                      before)
    # The best step: the first ones grow the heap either way, and a busy
    # machine's heap layout can cost a step its reuse; with glibc's
    # defaults every step maps the block afresh.
    print(applied, platform.libc_ver()[0], min(faults))
""")


@pytest.mark.parametrize('tuning', ['1', '0'])
def test_keep_freed_memory_stops_page_faults(tuning):
    if sys.platform != 'linux':
        pytest.skip('glibc malloc only')
    env = dict(os.environ, MIXER_MALLOC_TUNING=tuning, CUDA_VISIBLE_DEVICES='')
    result = subprocess.run([sys.executable, '-c', FAULTS_PER_STEP],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    applied, libc, faults = result.stdout.splitlines()[-1].split()
    if libc != 'glibc':
        pytest.skip(f'malloc is {libc!r}, not glibc')
    if tuning == '0':
        # glibc's defaults map blocks over 32 MiB afresh every time, and
        # the kernel faults in each of their 12288 pages.
        assert applied == 'False' and float(faults) > 1000
    else:
        assert applied == 'True' and float(faults) < 10
