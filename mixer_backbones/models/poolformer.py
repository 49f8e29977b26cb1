"""PoolFormer (MetaFormer with a pooling token mixer) as a dense backbone."""
import re
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import StateDict, collect_renamed
from .layers import ConvMlp, PoolingMixer, build_norm
from .metaformer import (MetaFormerBackbone, MetaFormerBlock, MetaFormerStage,
                         drop_path_rates)
from .validation import check_arguments


@MODELS.register_module()
class PoolFormer(MetaFormerBackbone):
    """PoolFormer backbone with a 4/8/16/32 feature pyramid.

    From `MetaFormer Is Actually What You Need for Vision
    <https://arxiv.org/abs/2111.11418>`_: a conv stem of stride 4, then
    four stages of :class:`~.metaformer.MetaFormerBlock` with GroupNorm(1,
    C), an average-pooling token mixer and a 1x1-conv MLP, and a stride-2
    conv between stages. Each requested level gets a new GroupNorm(1, C),
    as in the paper's detection and segmentation models.

    Weights load from the sail-sg release, timm / Hugging Face files
    (``.pth`` or ``.safetensors``), mmpretrain files and this package's own
    layout (see :meth:`convert_checkpoint`) through
    ``init_cfg=dict(type='Pretrained', checkpoint=PATH_OR_URL)``.

    Args:
        arch (str | dict): ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'``,
            ``'m48'`` or a dict with keys ``depths``, ``widths`` and
            ``layer_scale_init_value``. Defaults to ``'s12'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages (0-3, negative allowed)
            whose outputs are returned, at strides 4, 8, 16 and 32.
            Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 with their output norms. Defaults to -1.
        norm_eval (bool): Put BatchNorm layers in eval mode in ``train()``.
            PoolFormer has none with the default ``norm_cfg``.
            Defaults to False.
        with_cp (bool): Checkpoint every block to save memory. Defaults to
            False.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks up to this rate. Defaults to 0.
        norm_cfg (dict): Norm of the blocks. Defaults to
            ``dict(type='GN', num_groups=1)``.
        act_cfg (dict): Activation of the MLPs. Defaults to
            ``dict(type='GELU')``.
        layer_scale_init_value (float, optional): Overrides the arch's
            initial layer scale (1e-5 for S12/S24, 1e-6 otherwise).
            Defaults to None (the arch's value).
        mlp_ratio (float): MLP hidden width over the block width.
            Defaults to 4.
        pool_size (int): Pooling window of the token mixer. Defaults to 3.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.

    Example:
        >>> import torch
        >>> from mixer_backbones import PoolFormer
        >>> model = PoolFormer('s12').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 64, 200, 304)
        (1, 128, 100, 152)
        (1, 320, 50, 76)
        (1, 512, 25, 38)
    """
    family_name = 'poolformer'
    arch_zoo = {
        's12': dict(depths=[2, 2, 6, 2], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-5),
        's24': dict(depths=[4, 4, 12, 4], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-5),
        's36': dict(depths=[6, 6, 18, 6], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-6),
        'm36': dict(depths=[6, 6, 18, 6], widths=[96, 192, 384, 768],
                    layer_scale_init_value=1e-6),
        'm48': dict(depths=[8, 8, 24, 8], widths=[96, 192, 384, 768],
                    layer_scale_init_value=1e-6),
    }  # yapf: disable
    arch_keys = ('depths', 'widths')
    arch_optional_keys = ('layer_scale_init_value', )
    published = {
        's12': dict(params=11.9, gmacs=1.8),
        's24': dict(params=21.4, gmacs=3.4),
        's36': dict(params=30.9, gmacs=5.0),
        'm36': dict(params=56.2, gmacs=8.8),
        'm48': dict(params=73.5, gmacs=11.6),
    }
    timm_names = {arch: f'poolformer_{arch}' for arch in arch_zoo}
    # mmpretrain interleaves the downsamples with the stages in `network`.
    mmpretrain = dict(
        type='PoolFormer', stem='patch_embed', units='network', unit_step=2)
    cpu_memory_format = torch.channels_last
    tiny_arch = dict(depths=[1, 1, 1, 1], widths=[8, 16, 24, 32])
    # The 7x7 stride-4 stem with padding 2 needs at least 3 pixels.
    min_input_size = 3

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 layer_scale_init_value: Optional[float] = None,
                 mlp_ratio: float = 4.,
                 pool_size: int = 3,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        check_arguments(
            type(self).__name__,
            drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            mlp_ratio=mlp_ratio,
            pool_size=pool_size)
        settings = self.init_arch(arch)
        depths, widths = settings['depths'], settings['widths']
        if len(depths) != len(widths):
            raise ValueError(f'PoolFormer arch: depths {depths} and widths '
                             f'{widths} differ in length')
        if layer_scale_init_value is None:
            layer_scale_init_value = settings.get('layer_scale_init_value',
                                                  1e-5)
        self.stem = nn.Conv2d(
            in_channels, widths[0], kernel_size=7, stride=4, padding=2)
        self.stages = nn.ModuleList()
        rates = drop_path_rates(depths, drop_path_rate)
        for i, (depth, width) in enumerate(zip(depths, widths)):
            downsample = None if i == 0 else nn.Conv2d(
                widths[i - 1], width, kernel_size=3, stride=2, padding=1)
            blocks = [
                MetaFormerBlock(
                    width,
                    token_mixer=PoolingMixer(pool_size),
                    mlp=ConvMlp(width, int(width * mlp_ratio), act_cfg),
                    norm1=build_norm(norm_cfg, width),
                    norm2=build_norm(norm_cfg, width),
                    layer_scale_init_value=layer_scale_init_value,
                    drop_path=rate) for rate in rates[i]
            ]
            self.stages.append(MetaFormerStage(downsample, blocks))
        self.setup_outputs(widths)

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert a PoolFormer state dict to this package's layout.

        Layouts, detected from the keys:

        - ``mixer_backbones``: returned unchanged.
        - ``timm``: ``stem.conv``, ``stages.{i}.downsample.conv``,
          ``stages.{i}.blocks.{j}.layer_scale{1,2}.scale``, ``head.*``.
        - ``sail-sg`` (the original release, also mmpretrain's names once
          its ``backbone.`` prefix is gone): ``patch_embed.proj``,
          ``network.{0,2,4,6}.{j}.*`` blocks, ``network.{1,3,5}.proj``
          downsamples, ``layer_scale_{1,2}``; the classifier's final norm
          is ``norm`` (``norm6`` in mmpretrain), while the original
          detection/segmentation checkpoints carry per-level output norms
          ``norm{0,2,4,6}`` (all four; ``norm2/4/6`` in the RetinaNet
          files, trained with ``FORK_LAST3=1``; any subset holding one of
          ``norm0/2/4``), loaded as ``out_norms.{0,1,2,3}``.

        Two keys converting to one name raise :class:`CheckpointError`;
        keys of no known name pass unchanged and are refused on loading.
        """
        if 'stem.weight' in state_dict:
            return dict(state_dict), 'mixer_backbones'
        if 'stem.conv.weight' in state_dict:
            return _convert_timm(state_dict), 'timm'
        if 'patch_embed.proj.weight' in state_dict:
            return _convert_sail(state_dict), 'sail-sg/mmpretrain'
        raise CheckpointError(
            'not a PoolFormer checkpoint in a known layout (mixer_backbones: '
            "'stem.weight'; timm: 'stem.conv.weight'; sail-sg or "
            "mmpretrain: 'patch_embed.proj.weight'); first keys: "
            f'{list(state_dict)[:5]}')


def _layer_scale(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1)


def _convert_timm(state_dict: StateDict) -> StateDict:
    renamed = []
    for key, value in state_dict.items():
        new = key.replace('stem.conv.', 'stem.')
        new = new.replace('.downsample.conv.', '.downsample.')
        if re.search(r'\.layer_scale[12]\.scale$', new):
            new = new.replace('.scale', '.weight')
            value = _layer_scale(value)
        if new.startswith('head.norm.'):
            new = new[len('head.'):]
        renamed.append((key, new, value))
    return collect_renamed(renamed, 'timm')


# The per-level output norms of the original dense models: ``norm{i}``
# after network position i, one of the stage positions 0, 2, 4, 6.
_DENSE_NORM = re.compile(r'norm([0246])\.(.*)')


def _convert_sail(state_dict: StateDict) -> StateDict:
    """sail-sg / mmpretrain names to this package's.

    A checkpoint with any of ``norm0``, ``norm2``, ``norm4`` is a dense
    model of the original code (all four levels for Mask R-CNN and
    Semantic FPN, ``norm2/4/6`` for RetinaNet trained with
    ``FORK_LAST3=1``, or any other subset): all its ``norm{0,2,4,6}``
    become ``out_norms.{0,1,2,3}``. Otherwise ``norm`` (sail-sg) or
    ``norm6`` (mmpretrain) is the classifier's final norm: a file holding
    only ``norm6`` cannot be told from mmpretrain's and is read as
    mmpretrain's. Keys of no known name are passed on unchanged (and then
    refused on loading); two keys landing on one name raise.
    """
    dense_norms = any(f'norm{i}.weight' in state_dict for i in (0, 2, 4))
    renamed = []
    for key, value in state_dict.items():
        new = key
        match = re.match(r'network\.(\d+)\.(.*)', key)
        norm = _DENSE_NORM.fullmatch(key)
        if key.startswith('patch_embed.proj.'):
            new = 'stem.' + key[len('patch_embed.proj.'):]
        elif match:
            position, rest = int(match.group(1)), match.group(2)
            if position % 2 and rest.startswith('proj.'):  # downsample
                new = f'stages.{position // 2 + 1}.downsample.' + rest[
                    len('proj.'):]
            elif not position % 2:
                new = f'stages.{position // 2}.blocks.' + rest
                if re.search(r'\.layer_scale_[12]$', new):
                    new = new.replace('layer_scale_',
                                      'layer_scale') + ('.weight')
                    value = _layer_scale(value)
        elif norm and dense_norms:
            new = f'out_norms.{int(norm.group(1)) // 2}.{norm.group(2)}'
        elif key.startswith('norm6.'):  # mmpretrain's final norm
            new = 'norm.' + key[len('norm6.'):]
        renamed.append((key, new, value))
    return collect_renamed(renamed, 'sail-sg/mmpretrain')
