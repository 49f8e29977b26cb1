"""Whole released detectors and segmentors of the original repositories.

The PoolFormer (sail-sg) and EfficientFormer (snap-research) releases of
Mask R-CNN, RetinaNet (mmdet 2.x) and Semantic FPN (mmseg 0.x) models are
``{'state_dict': {'backbone.*', 'neck.*', heads}, 'meta': ...}`` files.
:func:`convert_release` turns such a state dict into one that a model
built from this package's configs (mmdet 3.x / mmseg 1.x) loads: the
backbone through its family's converter (the same as ``init_cfg``
loading), the neck and heads key by key. For the modules of these releases
(``FPN``, ``RPNHead``, ``StandardRoIHead`` with ``Shared2FCBBoxHead`` and
``FCNMaskHead``, ``RetinaHead``, mmseg's ``FPNHead``) mmdet 3.x and mmseg
1.x kept the 2.x / 0.x parameter names, so each key keeps its name once it
matches the pattern of its module; anything else is refused by name.
:func:`check_against_model` then compares every key and shape with the
model a config builds, refusing what does not fit.

    python tools/convert_checkpoint.py efficientformer \\
        mask_rcnn_efficientformer_l1.pth converted.pth \\
        --whole-model \\
        configs/efficientformer/mask-rcnn_efficientformer-l1_fpn_1x_coco.py
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .checkpoint import CheckpointError, strip_prefix

StateDict = Dict[str, torch.Tensor]

_PARAMS = r'\.(?:weight|bias)'
_BN = r'\.(?:weight|bias|running_mean|running_var|num_batches_tracked)'

# Every neck and head key of the released models, per module; names are
# those of mmdet 2.x / mmseg 0.x, unchanged in mmdet 3.x / mmseg 1.x.
MODULE_KEYS = {
    'FPN':
    rf'neck\.(?:lateral|fpn)_convs\.\d+\.conv{_PARAMS}',
    'RPNHead':
    rf'rpn_head\.rpn_(?:conv|cls|reg){_PARAMS}',
    'StandardRoIHead':
    rf'roi_head\.bbox_head\.(?:fc_cls|fc_reg|shared_fcs\.\d+){_PARAMS}'
    rf'|roi_head\.mask_head\.(?:convs\.\d+\.conv|upsample|conv_logits)'
    rf'{_PARAMS}',
    'RetinaHead':
    rf'bbox_head\.(?:cls|reg)_convs\.\d+\.conv{_PARAMS}'
    rf'|bbox_head\.retina_(?:cls|reg){_PARAMS}',
    'FPNHead':
    rf'decode_head\.scale_heads\.\d+\.\d+\.conv\.weight'
    rf'|decode_head\.scale_heads\.\d+\.\d+\.bn{_BN}'
    rf'|decode_head\.conv_seg{_PARAMS}',
}

# The released models, recognised by one key of their heads.
MODELS = {
    'Mask R-CNN (mmdet 2.x)':
    ('rpn_head.rpn_cls.weight', ('FPN', 'RPNHead', 'StandardRoIHead')),
    'RetinaNet (mmdet 2.x)':
    ('bbox_head.retina_cls.weight', ('FPN', 'RetinaHead')),
    'Semantic FPN (mmseg 0.x)':
    ('decode_head.conv_seg.weight', ('FPN', 'FPNHead')),
}

# Where the release files of the configs' ImageNet weights are published,
# for the error raised when a config names a file that is not there.
RELEASE_HINTS = {
    f'efficientformer_{arch}_300d.pth':
    'the snap-research/EfficientFormer README links it on Google Drive '
    f'(table "EfficientFormer-{arch.upper()}", column of the 300-epoch '
    'ImageNet weights); download it to that path, or point '
    'init_cfg.checkpoint at your copy'
    for arch in ('l1', 'l3', 'l7')
}


def release_hint(path: str) -> Optional[str]:
    """Where to get the published file ``path`` names, if it is one."""
    return RELEASE_HINTS.get(re.split(r'[\\/]', str(path))[-1])


def _families():
    from .models import FAMILIES
    return FAMILIES


def detect_family(backbone: StateDict) -> Tuple[str, type]:
    """The family whose converter recognises these backbone keys."""
    for name, family in _families().items():
        try:
            family.convert_checkpoint(backbone)
        except CheckpointError:
            continue
        return name, family
    raise CheckpointError(
        'the backbone keys are of no known family; first keys: '
        f'{list(backbone)[:5]}')


def convert_release(state_dict: StateDict,
                    family: Optional[str] = None) -> Tuple[StateDict, dict]:
    """Convert a whole released detector or segmentor state dict.

    Args:
        state_dict: The tensors of the file (``backbone.``, ``neck.`` and
            head keys; see :func:`mixer_backbones.checkpoint.
            extract_state_dict`).
        family: ``'poolformer'``, ``'efficientformer'``, ... to require
            that family; detected from the backbone keys by default.

    Returns:
        The converted state dict (``backbone.`` keys in this package's
        layout, neck and head keys unchanged) and a report: ``family``,
        ``layout`` (of the backbone), ``model`` and ``modules``.

    Raises:
        CheckpointError: no backbone, a backbone without the dense models'
            output norms, no known head, or keys that match no module of
            the detected model (all named).
    """
    backbone = strip_prefix(state_dict, 'backbone.')
    if not backbone:
        raise CheckpointError('not a whole detector or segmentor: no key '
                              f"starts with 'backbone.'; first keys: "
                              f'{list(state_dict)[:5]}')
    if family is None:
        family, model_cls = detect_family(backbone)
    else:
        model_cls = _families()[family]
    converted, layout = model_cls.convert_checkpoint(backbone)
    # EfficientFormerV2's dense models have no output norm, but their own
    # attention bias tables.
    if not any(
            k.startswith('out_norms.') or k.endswith('dense_attention_biases')
            for k in converted):
        raise CheckpointError(
            f'the backbone ({layout} layout) has no per-level output norms '
            '(nor dense attention tables): not the backbone of a released '
            'dense model')
    rest = {
        k: v
        for k, v in state_dict.items() if not k.startswith('backbone.')
    }
    found = [(name, modules) for name, (marker, modules) in MODELS.items()
             if marker in rest]
    if len(found) != 1:
        raise CheckpointError(
            'cannot tell which released model this is (looked for ' +
            ', '.join(f'{m!r} of {n}' for n, (m, _) in MODELS.items()) +
            f'); found {[n for n, _ in found]}; first non-backbone keys: '
            f'{list(rest)[:5]}')
    model, modules = found[0]
    pattern = re.compile('|'.join(f'(?:{MODULE_KEYS[m]})' for m in modules))
    unknown = [k for k in rest if not pattern.fullmatch(k)]
    if unknown:
        raise CheckpointError(
            f'{len(unknown)} keys of this {model} fit none of its modules '
            f'({", ".join(modules)}) under mmdet 3.x / mmseg 1.x names: '
            f'{unknown[:10]}; nothing was converted')
    whole = {f'backbone.{k}': v for k, v in converted.items()}
    whole.update(rest)
    return whole, dict(
        family=family, layout=layout, model=model, modules=list(modules))


def check_against_model(state_dict: StateDict, model: nn.Module) -> dict:
    """Compare a converted whole state dict with a built model.

    The backbone first takes the variant the checkpoint describes (see
    ``adapt_to_checkpoint``: EfficientFormer's dense attention biases).
    Every key of the model must be in the checkpoint with its shape, and
    every checkpoint key must be the model's, or a backbone key its loader
    ignores for a stated reason (an output norm of a level the config does
    not request, a table the original keeps unused).

    Returns:
        dict: ``ignored`` (``{key: reason}``) and ``loaded`` (the count).

    Raises:
        CheckpointError: naming missing keys, keys that fit nowhere and
            shape mismatches; the backbone is switched back.
    """
    backbone = model.backbone
    undo = backbone.adapt_to_checkpoint(strip_prefix(state_dict, 'backbone.'))
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    ignored: Dict[str, str] = {}
    unexpected: List[str] = []
    for key in state_dict:
        if key in own:
            continue
        reason = backbone.ignored_key_reason(
            key[len('backbone.'):]) if key.startswith('backbone.') else None
        if reason:
            ignored[key] = reason
        else:
            unexpected.append(key)
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape))
                  for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        undo()
        problems = []
        if mismatched:
            problems.append(f'{len(mismatched)} shape mismatches '
                            '(checkpoint vs model): ' +
                            ', '.join(f'{k} {a} vs {b}'
                                      for k, a, b in mismatched[:10]))
        if missing:
            problems.append(f'{len(missing)} keys of the model are not in '
                            f'the checkpoint: {missing[:10]}')
        if unexpected:
            problems.append(f'{len(unexpected)} checkpoint keys fit nowhere '
                            f'in the model: {unexpected[:10]}')
        raise CheckpointError('the converted checkpoint does not fit the '
                              'model of the config: ' + '; '.join(problems))
    return dict(ignored=ignored, loaded=len(state_dict) - len(ignored))
