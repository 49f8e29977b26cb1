"""ONNX export of every backbone (torch's dynamo exporter), in training
and deploy form, run in onnxruntime with the same outputs."""
import pytest
import torch

from test_compile import MODELS

pytestmark = pytest.mark.slow

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('deploy', [False, True], ids=['eval', 'deploy'])
def test_export_runs_in_onnxruntime(name, deploy, tmp_path):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(1, 3, 97, 131)
    path = str(tmp_path / f'{name}.onnx')
    torch.onnx.export(model, (x, ), path, dynamo=True, input_names=['x'])
    outputs = ort.InferenceSession(path).run(None, {'x': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(outputs) == len(expected)
    for actual, reference in zip(outputs, expected):
        actual = torch.from_numpy(actual)
        assert actual.shape == reference.shape
        error = (actual - reference).abs().max() / reference.abs().max()
        assert error < 1e-5, f'{name}: relative error {error:.2e}'
