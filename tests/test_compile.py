"""torch.compile traces every backbone as one graph (fullgraph=True: no
graph breaks), in training and inference, and the deploy forms too.
Dynamo's tracing is what breaks graphs; the ``eager`` backend checks it
without code generation (benchmark.py's ``compiled`` variant times
inductor)."""
import functools

import pytest
import torch

from mixer_backbones import families
from mixer_backbones.ops import cpu

# Every registered family in a tiny arch, and with the CPU fast paths.
MODELS = {}
for _name, _family in families().items():
    MODELS[_name] = functools.partial(_family, _family.tiny_arch)
    MODELS[f'{_name}-cpu-optimized'] = functools.partial(
        lambda family: cpu.optimize(family(family.tiny_arch)), _family)


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('form', ['train', 'eval', 'deploy'])
def test_fullgraph(name, form):
    torch._dynamo.reset()
    model = MODELS[name]()
    model.train(form == 'train')
    if form == 'deploy':
        model.switch_to_deploy()
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    x = torch.randn(2, 3, 67, 93, requires_grad=form == 'train')
    with torch.set_grad_enabled(form == 'train'):
        torch.manual_seed(0)
        expected = model(x)
        torch.manual_seed(0)
        actual = compiled(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    if form == 'train':
        sum(a.square().mean() for a in actual).backward()
        assert x.grad is not None
