"""The neck/backbone channel check (at build time in our tools, before the
run in the hosts' tools) and the hooks' registration."""
import pytest
from mmengine.config import Config

from conftest import run_tool, toy_config
from test_host_tools import host_tool

from mixer_backbones import check_neck_channels

RETINANET = 'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py'
WRONG = '[64,128,320]'  # S12's stages 0-2, the config requests 1-3


def build_detector(config, **neck):
    mmdet_registry = pytest.importorskip('mmdet.registry')
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.update(neck)
    return mmdet_registry.MODELS.build(cfg.model)


def test_matching_neck_passes():
    check_neck_channels(build_detector(RETINANET))


def test_mismatched_neck_names_both():
    model = build_detector(RETINANET, in_channels=[64, 128, 320])
    with pytest.raises(ValueError) as error:
        check_neck_channels(model)
    message = str(error.value)
    assert 'in_channels=[64, 128, 320]' in message
    assert '[128, 320, 512]' in message
    assert "arch 's12'" in message and 'out_indices=[1, 2, 3]' in message


def test_convmixer_pyramid_widths_are_checked():
    model = build_detector(
        'configs/convmixer/retinanet_convmixer-1024-20_fpn_1x_coco.py')
    check_neck_channels(model)
    model.neck.in_channels = [256, 256, 128]
    with pytest.raises(ValueError, match=r'\[256, 256, 256\]'):
        check_neck_channels(model)


@pytest.mark.parametrize('host', [None, 'mmdet'])
def test_train_tools_refuse_before_training(host, toy_coco, tmp_path):
    """Our tools/train.py refuses right after building the runner;
    mmdet's own, through the config's hook, before the first iteration."""
    tool = 'tools/train.py' if host is None else host_tool(host, 'train.py')
    result = run_tool(
        tool,
        toy_config(RETINANET, toy_coco, tmp_path),
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'model.neck.in_channels={WRONG}',
        expect_failure=True)
    assert 'FPN in_channels=[64, 128, 320] do not match' in result.stdout
    assert 'Iter(train)' not in result.stdout


def test_deploy_hook_refuses_training():
    from mixer_backbones import DeployBackboneHook
    with pytest.raises(RuntimeError, match='evaluation only'):
        DeployBackboneHook().before_train(runner=None)
