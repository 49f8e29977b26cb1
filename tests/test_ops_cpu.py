"""The optional CPU fast paths (mixer_backbones.ops.cpu): same outputs and
state dicts as the plain models, and a plain fallback with one warning
when PyTorch's private oneDNN operators are missing or fail."""
import os
import os.path as osp
import warnings

import pytest
import torch

from conftest import ROOT, assert_close_to_scale
from mixer_backbones import families
from mixer_backbones.ops import cpu

FAMILIES = families()


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test finds out afresh whether the fused operators work."""
    monkeypatch.setattr(cpu, '_unavailable', None)


def _deployed(family):
    torch.manual_seed(0)
    model = family(family.tiny_arch).eval()
    with torch.no_grad():  # non-trivial norms and layer scales
        for name, param in model.named_parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.switch_to_deploy()


@pytest.mark.parametrize('name', FAMILIES)
def test_optimize_keeps_outputs_and_state_dict(name):
    model = _deployed(FAMILIES[name])
    x = torch.randn(2, 3, 75, 101)
    keys = list(model.state_dict())
    with torch.no_grad():
        expected = model(x)
        actual = cpu.optimize(model)(x)
        again = cpu.optimize(model)(x)  # idempotent
    assert list(model.state_dict()) == keys
    for a, b, e in zip(actual, again, expected):
        assert_close_to_scale(a, e)
        assert torch.equal(a, b)


@pytest.mark.parametrize('name', FAMILIES)
def test_missing_private_ops_fall_back_with_one_warning(name, monkeypatch):
    model = _deployed(FAMILIES[name])
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)

    def renamed():
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no "
                             "attribute '_convolution_pointwise'")

    monkeypatch.setattr(cpu, '_private_ops', renamed)
    with pytest.warns(RuntimeWarning, match='fused kernels unavailable'):
        cpu.optimize(model)
    assert not cpu.fused_ops_available()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # only the one warning
        cpu.optimize(model)
        with torch.no_grad():
            actual = model(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_failing_private_ops_fall_back_at_run_time(monkeypatch):
    family = FAMILIES['poolformer']
    model = cpu.optimize(_deployed(family))  # the probe passes here
    if not cpu.fused_ops_available():
        pytest.skip('no oneDNN in this torch build')
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)

    class Broken:

        def __call__(self, *args):
            raise RuntimeError('oneDNN: unsupported')

        binary = __call__

    monkeypatch.setattr(cpu, '_private_ops', lambda: (Broken(), Broken()))
    with pytest.warns(RuntimeWarning, match='RuntimeError: oneDNN'):
        with torch.no_grad():
            actual = model(x)
    for a, e in zip(actual, expected):
        assert_close_to_scale(a, e)


def test_private_ops_are_named_only_in_the_cpu_module():
    package = osp.join(ROOT, 'mixer_backbones')
    found = []
    for folder, _, names in os.walk(package):
        for file_name in names:
            path = osp.join(folder, file_name)
            if file_name.endswith('.py') and path != cpu.__file__:
                with open(path) as f:
                    if 'mkldnn' in f.read():
                        found.append(path)
    assert found == []
