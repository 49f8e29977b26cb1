"""Every config under configs/ parses and builds its model."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The configs to run; configs/_base_/ holds the pieces they share.
CONFIGS = sorted(
    osp.relpath(path, ROOT) for path in glob.glob(
        osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in path)


def test_configs_exist():
    assert len(CONFIGS) >= 15


def _without_pretrained(model_cfg):
    model_cfg.backbone.init_cfg = None
    return model_cfg


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_model(path):
    cfg = Config.fromfile(osp.join(ROOT, path))
    assert cfg.custom_imports == dict(
        imports=['mixer_backbones'], allow_failed_imports=False)
    scope = cfg.default_scope
    registry = pytest.importorskip(f'{scope}.registry')
    assert cfg.model.backbone.type.startswith('mixer_backbones.')
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.MODELS.build(_without_pretrained(cfg.model))
    backbone = model.backbone
    # The neck is built for exactly the backbone's output widths.
    assert list(cfg.model.neck.in_channels) == list(backbone.out_channels)
    # Nothing of the backbone is left out of the forward pass (DDP).
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable
    # Batch arithmetic is declared for auto_scale_lr: 8 GPUs x 2 images
    # for detection, 8 x 4 for segmentation.
    expected = 32 if scope == 'mmseg' else 16
    assert cfg.auto_scale_lr.base_batch_size == expected
