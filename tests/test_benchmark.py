"""The benchmark tool at small sizes: it runs every variant, reports equal
outputs for equal weights, and writes its JSON."""
import json
import re

import pytest

from conftest import run_tool

pytestmark = pytest.mark.slow


def test_benchmark_poolformer_small(tmp_path):
    out = tmp_path / 'bench.json'
    result = run_tool('tools/benchmark.py', 'poolformer', '--arch', 's12',
                      '--size', '64', '96', '--mode', 'both', '--rounds', '2',
                      '--warmup', '1', '--json', out)
    assert 'speed-up' in result.stdout
    report = json.loads(out.read_text())['results']
    assert set(report) == {
        'ours', 'channels_last', 'deploy', 'deploy_channels_last', 'timm',
        'timm_channels_last'
    }
    for name, entry in report.items():
        assert entry['max_rel_diff'] < 1e-5, name
        assert entry['infer']['median_ms'] > 0
        if not name.startswith('deploy'):  # inference only
            assert entry['train']['saved_for_backward_mib'] > 0


def test_benchmark_reports_what_cannot_run(tmp_path):
    out = tmp_path / 'bench.json'
    run_tool('tools/benchmark.py', 'efficientformer', '--arch', 'l1', '--size',
             '96', '96', '--variants', 'ours', 'deploy', 'timm', '--rounds',
             '1', '--warmup', '0', '--json', out)
    report = json.loads(out.read_text())['results']
    # timm's EfficientFormer only runs at 224; ours and the deploy form do.
    assert report['timm']['note'].startswith('cannot run')
    assert report['deploy']['max_rel_diff'] < 1e-5
    assert report['deploy']['infer']['median_ms'] > 0


@pytest.mark.parametrize('family, arch', [('poolformer', 's12'),
                                          ('convmixer', '768_32')])
def test_benchmark_mmpretrain_on_the_same_weights(family, arch, tmp_path):
    pytest.importorskip('mmpretrain')
    out = tmp_path / 'bench.json'
    run_tool('tools/benchmark.py', family, '--arch', arch, '--size', '64',
             '64', '--variants', 'ours', 'mmpretrain', 'timm', '--rounds', '1',
             '--warmup', '0', '--mode', 'both', '--json', out)
    report = json.loads(out.read_text())['results']
    assert report['mmpretrain']['max_rel_diff'] < 1e-5
    assert report['mmpretrain']['train']['saved_for_backward_mib'] > 0
    assert report['timm']['max_rel_diff'] < 1e-5


def test_gemm_floor_times_the_1x1_convs_alone(tmp_path):
    out = tmp_path / 'bench.json'
    run_tool('tools/benchmark.py', 'convmixer', '--arch', '768_32', '--size',
             '64', '64', '--variants', 'ours', 'optimized', 'gemm_floor',
             '--mode', 'both', '--rounds', '1', '--warmup', '1', '--json', out)
    report = json.loads(out.read_text())['results']
    # ops.cpu.optimize: the same outputs, trainable (depthwise backward).
    assert report['optimized']['max_rel_diff'] < 1e-5
    assert report['optimized']['train']['saved_for_backward_mib'] > 0
    floor = report['gemm_floor']
    assert floor['max_rel_diff'] is None  # it has no outputs to compare
    assert floor['infer']['median_ms'] > 0
    assert 'train' not in floor and 'train' in report['ours']


def test_benchmark_caformer_against_timm(tmp_path):
    """A MetaFormer baseline against timm on the same weights: equal
    outputs, and StarReLU keeping only its input saves memory."""
    out = tmp_path / 'bench.json'
    run_tool('tools/benchmark.py', 'caformer', '--arch', 's18', '--size',
             '65', '97', '--mode', 'both', '--rounds', '1', '--warmup', '1',
             '--variants', 'ours', 'timm', '--json', out)
    report = json.loads(out.read_text())['results']
    assert report['timm']['max_rel_diff'] < 1e-5
    ours, timm = (report[name]['train']['saved_for_backward_mib']
                  for name in ('ours', 'timm'))
    assert 0 < ours < timm


def test_peak_memory_tool(tmp_path):
    result = run_tool('tools/peak_memory.py', 'caformer', '--arch', 's18',
                      '--size', '65', '97', '--attention', 'fused', 'math')
    line = next(text for text in result.stdout.splitlines()
                if text.startswith('65x97'))
    fused, math = (float(v) for v in re.findall(r'(?:fused|math) (\d+)', line))
    assert fused > 0 and math > 0
