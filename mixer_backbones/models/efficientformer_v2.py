"""EfficientFormerV2 as a dense backbone that runs at any input size."""
import re
from collections import OrderedDict
from typing import AbstractSet, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import MeanTokens, StateDict, collect_renamed
from .efficientformer import (BIAS_MODES, DENSE_TABLE_KEY, DenseBiasLoading,
                              RelativeBiasTable, _DistilledHeads,
                              dense_pair_bias, offset_index,
                              resample_offset_table)
from .layers import (DropPath, LayerScale, add_residual, build_activation,
                     build_norm, fold_batchnorm)
from .metaformer import MetaFormerBackbone, MetaFormerStage, drop_path_rates
from .validation import check_arguments


def conv_norm(in_channels: int,
              out_channels: int,
              norm_cfg: dict,
              kernel_size: int = 1,
              stride: int = 1,
              groups: int = 1) -> nn.Sequential:
    """``conv`` (with bias, padding ``kernel_size // 2``) then ``norm``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups),
            norm=build_norm(norm_cfg, out_channels)))


def fold_conv_norms(module: nn.Module) -> None:
    """Fold the BatchNorm of every :func:`conv_norm` pair under ``module``
    into its conv (eval-mode statistics), in place."""
    for child in list(module.modules()):
        if (isinstance(child, nn.Sequential) and list(
                child._modules) == ['conv', 'norm']
                and isinstance(child.norm, _BatchNorm)):
            child.conv = fold_batchnorm(child.conv, child.norm)
            child.norm = nn.Identity()


class TalkingHeadAttention(RelativeBiasTable):
    """EfficientFormerV2's attention on NCHW maps (``Attention4D``).

    Queries, keys and values are 1x1 conv-BN projections; the logits get a
    relative-position bias per head and per offset ``(|dy|, |dx|)`` and
    are mixed across heads by a 1x1 conv before and after the softmax
    ("talking heads"); a depthwise 3x3 conv-BN of the values is added to
    the attention's output, then GELU and a 1x1 conv-BN project back.
    With ``stride=2`` (the blocks of stage 2) a depthwise stride-2 conv-BN
    first halves the grid (sides rounded up) and the output is resized
    bilinearly back to exactly the input's size (the original's
    ``scale_factor=2`` upsampling, which is the same on even sides and one
    pixel too many on odd ones).

    The bias table is defined on the ``resolution x resolution`` grid the
    attention sees at 224x224 (7x7) and resampled to the grid it sees
    otherwise (see :func:`~.efficientformer.resample_offset_table`).

    Args:
        channels (int): Input and output channels.
        num_heads (int): Attention heads. Defaults to 8.
        key_dim (int): Channels of each head's queries and keys.
            Defaults to 32.
        attn_ratio (float): Value channels per head over ``key_dim``.
            Defaults to 4.
        resolution (int): Side of the grid the bias table is defined on.
            Defaults to 7.
        stride (int): 2 to attend on a grid of half the size. Defaults
            to 1.
        bias_mode (str): See :class:`~.efficientformer.RelativeBiasTable`.
            Defaults to ``'bicubic'``.
        norm_cfg (dict): The projections' norms. Defaults to
            ``dict(type='BN')``.
        act_cfg (dict): Activation before the output projection.
            Defaults to ``dict(type='GELU')``.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 key_dim: int = 32,
                 attn_ratio: float = 4.,
                 resolution: int = 7,
                 stride: int = 1,
                 bias_mode: str = 'bicubic',
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU')) -> None:
        super().__init__()
        self.key_dim = key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.stride = stride
        values = num_heads * self.value_dim
        if stride > 1:
            self.stride_conv = conv_norm(
                channels, channels, norm_cfg, 3, stride, groups=channels)
        self.q = conv_norm(channels, num_heads * key_dim, norm_cfg)
        self.k = conv_norm(channels, num_heads * key_dim, norm_cfg)
        self.v = conv_norm(channels, values, norm_cfg)
        self.v_local = conv_norm(values, values, norm_cfg, 3, groups=values)
        self.talking_head1 = nn.Conv2d(num_heads, num_heads, 1)
        self.talking_head2 = nn.Conv2d(num_heads, num_heads, 1)
        self.act = build_activation(act_cfg)
        self.proj = conv_norm(values, channels, norm_cfg)
        self.init_bias_table(num_heads, resolution, bias_mode)

    def relative_bias(self, height: int, width: int) -> torch.Tensor:
        """The ``[heads, N, N]`` bias of an HxW grid (the grid attended
        over, after the stride)."""
        if self.bias_mode == 'dense':
            return dense_pair_bias(self.offset_table(), height * width,
                                   height * width)
        grid = resample_offset_table(self.offset_table(), height, width,
                                     self.bias_mode).flatten(1)
        return grid[:, offset_index(height, width, device=grid.device)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        tokens = self.stride_conv(x) if self.stride > 1 else x
        grid = tokens.shape[-2:]
        heads = self.num_heads
        q = self.q(tokens).flatten(2).view(batch, heads, self.key_dim, -1)
        k = self.k(tokens).flatten(2).view(batch, heads, self.key_dim, -1)
        v = self.v(tokens)
        v_local = self.v_local(v)
        v = v.flatten(2).view(batch, heads, self.value_dim, -1)
        attn = (q.transpose(-2, -1) @ k) * self.scale
        attn = attn + self.cached_relative_bias(grid[0], grid[1], attn.dtype)
        attn = self.talking_head2(self.talking_head1(attn).softmax(dim=-1))
        out = (v @ attn.transpose(-2, -1)).reshape(v_local.shape) + v_local
        if self.stride > 1:
            out = F.interpolate(
                out, size=(height, width), mode='bilinear',
                align_corners=False)
        return self.proj(self.act(out))

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, key_dim={self.key_dim}, '
                f'value_dim={self.value_dim}, stride={self.stride}, '
                f'resolution={self.resolution}, '
                f'bias_mode={self.bias_mode!r}')


class LocalGlobalQuery(nn.Module):
    """The queries of :class:`DownsampleAttention`: a depthwise stride-2
    3x3 conv plus every second pixel, then a 1x1 conv-BN."""

    def __init__(self, in_channels: int, out_channels: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.local = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride=2,
            padding=1,
            groups=in_channels)
        self.proj = conv_norm(in_channels, out_channels, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.local(x) + x[:, :, ::2, ::2])


class DownsampleAttention(RelativeBiasTable):
    """The attention half of the downsampling before the last stage
    (``Attention4DDownsample``): queries on every second pixel
    (:class:`LocalGlobalQuery`) attend to keys and values on the full
    grid; a depthwise stride-2 3x3 conv-BN of the values is added, then
    GELU and a 1x1 conv-BN to the new width. The output is
    ``ceil(H / 2) x ceil(W / 2)``.

    The bias of query ``(qy, qx)`` and key ``(ky, kx)`` is the table's
    entry for the offset ``(|2 qy - ky|, |2 qx - kx|)``; the table is
    defined on the key grid at 224x224 (14x14) and resampled to the key
    grid otherwise.

    Args:
        channels (int): Input channels.
        out_channels (int): Output channels.
        num_heads (int): Attention heads. Defaults to 8.
        key_dim (int): Channels of each head's queries and keys.
            Defaults to 16.
        attn_ratio (float): Value channels per head over ``key_dim``.
            Defaults to 4.
        resolution (int): Side of the key grid the bias table is defined
            on. Defaults to 14.
        bias_mode (str): See :class:`~.efficientformer.RelativeBiasTable`.
            Defaults to ``'bicubic'``.
        norm_cfg (dict): The projections' norms. Defaults to
            ``dict(type='BN')``.
        act_cfg (dict): Activation before the output projection.
            Defaults to ``dict(type='GELU')``.
    """

    def __init__(self,
                 channels: int,
                 out_channels: int,
                 num_heads: int = 8,
                 key_dim: int = 16,
                 attn_ratio: float = 4.,
                 resolution: int = 14,
                 bias_mode: str = 'bicubic',
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU')) -> None:
        super().__init__()
        self.key_dim = key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        values = num_heads * self.value_dim
        self.q = LocalGlobalQuery(channels, num_heads * key_dim, norm_cfg)
        self.k = conv_norm(channels, num_heads * key_dim, norm_cfg)
        self.v = conv_norm(channels, values, norm_cfg)
        self.v_local = conv_norm(
            values, values, norm_cfg, 3, stride=2, groups=values)
        self.act = build_activation(act_cfg)
        self.proj = conv_norm(values, out_channels, norm_cfg)
        self.init_bias_table(num_heads, resolution, bias_mode)

    def relative_bias(self, height: int, width: int) -> torch.Tensor:
        """The ``[heads, Nq, N]`` bias for keys on an HxW grid and queries
        on every second point of it."""
        if self.bias_mode == 'dense':
            queries = -(-height // 2) * -(-width // 2)
            return dense_pair_bias(self.offset_table(), queries,
                                   height * width, 2)
        grid = resample_offset_table(self.offset_table(), height, width,
                                     self.bias_mode).flatten(1)
        return grid[:, offset_index(height, width, 2, grid.device)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        heads = self.num_heads
        q = self.q(x).flatten(2).view(batch, heads, self.key_dim, -1)
        k = self.k(x).flatten(2).view(batch, heads, self.key_dim, -1)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.flatten(2).view(batch, heads, self.value_dim, -1)
        attn = (q.transpose(-2, -1) @ k) * self.scale
        attn = attn + self.cached_relative_bias(height, width, attn.dtype)
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(v_local.shape) + v_local
        return self.proj(self.act(out))

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, key_dim={self.key_dim}, '
                f'value_dim={self.value_dim}, resolution={self.resolution}, '
                f'bias_mode={self.bias_mode!r}')


class AttentionDownsample(nn.Module):
    """Downsampling before the last stage: a stride-2 3x3 conv-BN plus
    :class:`DownsampleAttention`."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict,
                 act_cfg: dict, attention: dict) -> None:
        super().__init__()
        self.conv = conv_norm(in_channels, out_channels, norm_cfg, 3, 2)
        self.attention = DownsampleAttention(
            in_channels,
            out_channels,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            **attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.attention(x)


class DepthwiseConvMlp(nn.Module):
    """The FFN of EfficientFormerV2 on NCHW maps: ``fc1`` (1x1) - BN -
    act - depthwise 3x3 ``mid`` - BN - act - ``fc2`` (1x1) - BN, with
    dropout after the activations and at the end.

    Args:
        channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
        norm_cfg (dict): Norms. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation. Defaults to ``dict(type='GELU')``.
        drop (float): Dropout. Defaults to 0.
    """

    def __init__(self,
                 channels: int,
                 hidden_channels: int,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1)
        self.norm1 = build_norm(norm_cfg, hidden_channels)
        self.act = build_activation(act_cfg)
        self.mid = nn.Conv2d(
            hidden_channels,
            hidden_channels,
            3,
            padding=1,
            groups=hidden_channels)
        self.mid_norm = build_norm(norm_cfg, hidden_channels)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)
        self.norm2 = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.fc1(x)))
        x = self.drop(self.act(self.mid_norm(self.mid(x))))
        return self.drop(self.norm2(self.fc2(x)))

    def fold_batchnorms(self) -> None:
        """Fold each BatchNorm into the conv before it (eval-mode
        statistics); the norms become ``nn.Identity()``."""
        for conv_name, norm_name in (('fc1', 'norm1'), ('mid', 'mid_norm'),
                                     ('fc2', 'norm2')):
            norm = getattr(self, norm_name)
            if isinstance(norm, _BatchNorm):
                setattr(self, conv_name,
                        fold_batchnorm(getattr(self, conv_name), norm))
                setattr(self, norm_name, nn.Identity())


class EfficientFormerV2Block(nn.Module):
    """``x + drop_path(ls1 * attention(x))`` (attention blocks only), then
    ``x + drop_path(ls2 * ffn(x))``, on NCHW maps; no norm before either
    branch (the branches end in BatchNorms).

    Args:
        channels (int): Channels.
        mlp_ratio (float): FFN hidden width over ``channels``.
        layer_scale_init_value (float, optional): Initial layer scales;
            None for none.
        drop_path (float): Stochastic depth of both branches.
        norm_cfg (dict): Norms.
        act_cfg (dict): Activations.
        attention (dict, optional): Arguments of
            :class:`TalkingHeadAttention`; None for an FFN-only block.
        drop (float): Dropout in the FFN. Defaults to 0.
    """

    def __init__(self,
                 channels: int,
                 mlp_ratio: float,
                 layer_scale_init_value: Optional[float],
                 drop_path: float,
                 norm_cfg: dict,
                 act_cfg: dict,
                 attention: Optional[dict] = None,
                 drop: float = 0.) -> None:
        super().__init__()

        def scale() -> nn.Module:
            if layer_scale_init_value is None:
                return nn.Identity()
            return LayerScale(channels, layer_scale_init_value)

        if attention is not None:
            self.token_mixer = TalkingHeadAttention(
                channels, norm_cfg=norm_cfg, act_cfg=act_cfg, **attention)
            self.layer_scale1 = scale()
        else:
            self.token_mixer = None
        self.mlp = DepthwiseConvMlp(channels, int(channels * mlp_ratio),
                                    norm_cfg, act_cfg, drop)
        self.layer_scale2 = scale()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_mixer is not None:
            x = add_residual(
                x, self.drop_path(self.layer_scale1(self.token_mixer(x))))
        return add_residual(x,
                            self.drop_path(self.layer_scale2(self.mlp(x))))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm into its conv, and each layer scale into
        the last conv of its branch (eval mode); drop path goes."""
        if self.token_mixer is not None:
            fold_conv_norms(self.token_mixer)
            if isinstance(self.layer_scale1, LayerScale) and isinstance(
                    self.token_mixer.proj.norm, nn.Identity):
                _scale_conv(self.token_mixer.proj.conv,
                            self.layer_scale1.weight)
                self.layer_scale1 = nn.Identity()
        self.mlp.fold_batchnorms()
        if isinstance(self.layer_scale2, LayerScale) and isinstance(
                self.mlp.norm2, nn.Identity):
            _scale_conv(self.mlp.fc2, self.layer_scale2.weight)
            self.layer_scale2 = nn.Identity()
        self.drop_path = nn.Identity()


def _scale_conv(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    """Multiply ``conv``'s output channels by ``scale``, in place."""
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.mul_(scale)


@MODELS.register_module()
class EfficientFormerV2(DenseBiasLoading, MetaFormerBackbone):
    """EfficientFormerV2 backbone with a 4/8/16/32 feature pyramid, at any
    input size.

    From `Rethinking Vision Transformers for MobileNet Size and Speed
    <https://arxiv.org/abs/2212.08059>`_: a stem of two stride-2
    conv-BN-GELU; four stages of blocks whose FFN has a depthwise 3x3 conv
    between its 1x1 convs; in the last ``vit_num`` blocks of stages 2 and
    3 an attention branch before the FFN (:class:`TalkingHeadAttention`,
    on a grid halved by a stride-2 depthwise conv in stage 2 and resized
    back to the level's exact size); a stride-2 conv-BN before stages 1
    and 2 and, before stage 3, that conv plus an attention whose queries
    are on every second pixel (:class:`DownsampleAttention`). Layer scales
    on every branch, stochastic depth increasing linearly over the blocks.
    Every level is returned as NCHW; each requested level gets a new
    output norm (``out_norm_cfg``, GroupNorm(1, C) by default; the
    authors' dense models have none, ``out_norm_cfg=None``).

    Any input size: each attention's relative-position bias table is
    learned on the grid it sees at 224x224 (7x7 for the blocks, 14x14 keys
    for the downsampling). On another grid (the stride-2 attention of
    stage 2 sees ``ceil(H / 32) x ceil(W / 32)``, the last stage ``ceil(H
    / 32) x ceil(W / 32)``, the downsampling's keys ``ceil(H / 16) x
    ceil(W / 16)``) the table, viewed as a ``[heads, R, R]`` image over the
    offsets ``(|dy|, |dx|)``, is resampled bicubically with
    ``align_corners=True`` to that grid, as EfficientFormer V1 does (see
    :class:`~.efficientformer.EfficientFormer`): offset 0 keeps its value,
    the largest pretrained offset maps to the largest offset of the grid.
    At 224x224 the tables are used as they are, so the outputs equal the
    classification model's. ``bias_mode='clamp'`` keeps each offset's bias
    in pixels instead.

    Weights load from the snap-research release (and its detection and
    segmentation models, whose own bias tables load in ``'dense'`` mode),
    timm / Hugging Face files and this package's layout (see
    :meth:`convert_checkpoint`). :meth:`switch_to_deploy` folds every
    BatchNorm and layer scale for inference.

    Args:
        arch (str | dict): ``'s0'``, ``'s1'``, ``'s2'``, ``'l'`` or a dict
            with keys ``depths``, ``widths``, ``vit_num``, ``mlp_ratios``
            (one list per stage, one ratio per block) and optionally
            ``layer_scale_init_value``. Defaults to ``'s0'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages (0-3, negative allowed)
            whose outputs are returned, at strides 4, 8, 16 and 32 (sizes
            rounded up). Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 with their output norms. Defaults to -1.
        norm_eval (bool): Put every BatchNorm (stem, downsamples, FFNs and
            attention projections; not the output norms) in eval mode in
            ``train()``. Defaults to False.
        with_cp (bool): Checkpoint every block to save memory.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks up to this rate (the authors' ImageNet rates: 0 for
            S0/S1, 0.02 S2, 0.1 L; their dense models keep those).
            Defaults to 0.
        norm_cfg (dict): Every BatchNorm of the network (e.g.
            ``dict(type='SyncBN')``). Defaults to ``dict(type='BN')``.
        act_cfg (dict): Every activation. Defaults to
            ``dict(type='GELU')``.
        out_norm_cfg (dict, optional): Norm of each requested level, None
            for none (as the authors' dense models).
            Defaults to ``dict(type='GN', num_groups=1)``.
        layer_scale_init_value (float, optional): Overrides the arch's
            initial layer scale (1e-5). Defaults to None.
        bias_mode (str): How each attention's bias table is carried to
            other grid sizes: ``'bicubic'``, ``'bilinear'`` or ``'clamp'``
            (see :func:`~.efficientformer.resample_offset_table`), or
            ``'dense'``: the authors' dense models' own tables (the last
            stage's on a ``bias_resolution`` grid, the downsampling's on
            twice that) resized as pair matrices. Loading a checkpoint that
            carries dense tables (the released Mask R-CNN and Semantic FPN
            models) switches to ``'dense'`` by itself; set it here to train
            from such a checkpoint under DDP. Defaults to ``'bicubic'``.
        bias_resolution (int, optional): With ``bias_mode='dense'``, the
            side of the last stage's grid the dense tables were trained
            for: 25 (the detection release, 800 pixels) or 16 (the
            segmentation release, 512). Defaults to None.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.

    Example:
        >>> import torch
        >>> from mixer_backbones import EfficientFormerV2
        >>> model = EfficientFormerV2('s0').eval()
        >>> for level in model(torch.rand(1, 3, 500, 701)):
        ...     print(tuple(level.shape))
        (1, 32, 125, 176)
        (1, 48, 63, 88)
        (1, 96, 32, 44)
        (1, 176, 16, 22)
    """
    arch_zoo = {
        's0': dict(depths=[2, 2, 6, 4], widths=[32, 48, 96, 176], vit_num=2,
                   mlp_ratios=[[4] * 2, [4] * 2, [4, 3, 3, 3, 4, 4],
                               [4, 3, 3, 4]]),
        's1': dict(depths=[3, 3, 9, 6], widths=[32, 48, 120, 224], vit_num=2,
                   mlp_ratios=[[4] * 3, [4] * 3, [4, 4, 3, 3, 3, 3, 4, 4, 4],
                               [4, 4, 3, 3, 4, 4]]),
        's2': dict(depths=[4, 4, 12, 8], widths=[32, 64, 144, 288],
                   vit_num=4,
                   mlp_ratios=[[4] * 4, [4] * 4, [4, 4] + [3] * 6 + [4] * 4,
                               [4, 4, 3, 3, 3, 3, 4, 4]]),
        'l': dict(depths=[5, 5, 15, 10], widths=[40, 80, 192, 384],
                  vit_num=6,
                  mlp_ratios=[[4] * 5, [4] * 5, [4] * 4 + [3] * 7 + [4] * 4,
                              [4, 4, 4, 3, 3, 3, 3, 4, 4, 4]]),
    }  # yapf: disable
    arch_keys = ('depths', 'widths', 'vit_num', 'mlp_ratios')
    arch_optional_keys = ('layer_scale_init_value', )
    family_name = 'efficientformer_v2'
    # GMACs: the paper's and the authors' README. Parameters: the
    # classifier as trained (timm's model cards); the paper's 3.5, 6.1,
    # 12.6 and 26.1 M count it with its BatchNorms folded and without the
    # bias tables (3.548, 6.111, 12.584, 26.120 M here).
    published = {
        's0': dict(params=3.6, gmacs=0.40),
        's1': dict(params=6.2, gmacs=0.65),
        's2': dict(params=12.7, gmacs=1.25),
        'l': dict(params=26.3, gmacs=2.56),
    }
    timm_names = {arch: f'efficientformerv2_{arch}' for arch in arch_zoo}
    cpu_memory_format = torch.channels_last
    tiny_arch = dict(
        depths=[1, 1, 2, 2],
        widths=[8, 16, 24, 32],
        vit_num=1,
        mlp_ratios=[[2], [2], [2, 2], [2, 2]])
    classifier_prefixes = ('head.', 'head_dist.', 'norm.')
    unit_word = 'stage'

    def __init__(self,
                 arch: Union[str, dict] = 's0',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 out_norm_cfg: Optional[dict] = dict(type='GN', num_groups=1),
                 layer_scale_init_value: Optional[float] = None,
                 bias_mode: str = 'bicubic',
                 bias_resolution: Optional[int] = None,
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
            layer_scale_init_value=layer_scale_init_value)
        settings = self.init_arch(arch)
        depths, widths = settings['depths'], settings['widths']
        vit_num, mlp_ratios = settings['vit_num'], settings['mlp_ratios']
        name = type(self).__name__
        if len(depths) != 4 or len(widths) != 4:
            raise ValueError(f'{name} arch: depths {depths} and widths '
                             f'{widths} must have 4 stages each')
        if not 0 <= vit_num <= min(depths[2:]):
            raise ValueError(f'{name} arch: vit_num={vit_num} must be '
                             f'between 0 and the depths of stages 2 and 3, '
                             f'{depths[2:]}')
        if (not isinstance(mlp_ratios, Sequence) or [
                len(r) if isinstance(r, Sequence) else None
                for r in mlp_ratios
        ] != list(depths)):
            raise ValueError(f'{name} arch: mlp_ratios {mlp_ratios!r} must '
                             f'hold one ratio per block of depths {depths}')
        if bias_mode not in BIAS_MODES:
            raise ValueError(f'{name}: unknown bias_mode {bias_mode!r}; '
                             f'valid: {BIAS_MODES}')
        if bias_mode == 'dense' and not (isinstance(bias_resolution, int)
                                         and bias_resolution > 0):
            raise ValueError(
                f"{name}: bias_mode='dense' needs bias_resolution (25 for "
                f'the detection release, 16 for the segmentation release), '
                f'got {bias_resolution!r}')
        if layer_scale_init_value is None:
            layer_scale_init_value = settings.get('layer_scale_init_value',
                                                  1e-5)
        # The grids the attentions see at 224x224, or the dense tables'.
        side = bias_resolution if bias_mode == 'dense' else 7
        self.vit_num = vit_num
        self.bias_mode = bias_mode

        stem_channels = widths[0] // 2
        self.stem = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, stem_channels, 3, 2, 1),
                norm1=build_norm(norm_cfg, stem_channels),
                act1=build_activation(act_cfg),
                conv2=nn.Conv2d(stem_channels, widths[0], 3, 2, 1),
                norm2=build_norm(norm_cfg, widths[0]),
                act2=build_activation(act_cfg)))
        self.stages = nn.ModuleList()
        rates = drop_path_rates(depths, drop_path_rate)
        for i, (depth, width) in enumerate(zip(depths, widths)):
            if i == 0:
                downsample = None
            elif i < 3:
                downsample = conv_norm(widths[i - 1], width, norm_cfg, 3, 2)
            else:
                downsample = AttentionDownsample(
                    widths[i - 1], width, norm_cfg, act_cfg,
                    dict(resolution=2 * side, bias_mode=bias_mode))
            blocks = []
            for j, (rate, ratio) in enumerate(zip(rates[i], mlp_ratios[i])):
                attention = None
                if i >= 2 and j >= depth - vit_num:
                    attention = dict(
                        resolution=side,
                        stride=2 if i == 2 else 1,
                        bias_mode=bias_mode)
                blocks.append(
                    EfficientFormerV2Block(width, ratio,
                                           layer_scale_init_value, rate,
                                           norm_cfg, act_cfg, attention))
            self.stages.append(MetaFormerStage(downsample, blocks))
        self.setup_outputs(
            widths, None if out_norm_cfg is None else
            lambda channels: build_norm(out_norm_cfg, channels))

    @classmethod
    def classifier_head(cls, channels: int,
                        num_classes: int = 1000) -> nn.Module:
        """BatchNorm, global average, and the average of the
        classification and distillation heads."""
        return nn.Sequential(
            nn.BatchNorm2d(channels), MeanTokens(),
            _DistilledHeads(channels, num_classes))

    def min_single_image_training_size(self) -> int:
        # The stride-2 attention of stage 2 and the last stage see
        # ceil(n / 32) pixels: 1 up to n = 32.
        return 33

    # ---------------------------------------------------------- deploy --
    @torch.no_grad()
    def switch_to_deploy(self) -> 'EfficientFormerV2':
        """Fold every BatchNorm (stem, downsamples, FFNs, attention
        projections) into the conv before it, in place, using its running
        statistics, and every layer scale into the last conv of its
        branch. The model has no BatchNorm left and gives the same outputs
        in eval mode; the form is for inference. Returns the model."""
        if self.deployed:
            return self
        for index in ('1', '2'):
            norm = getattr(self.stem, 'norm' + index)
            if isinstance(norm, _BatchNorm):
                setattr(self.stem, 'conv' + index,
                        fold_batchnorm(getattr(self.stem, 'conv' + index),
                                       norm))
                setattr(self.stem, 'norm' + index, nn.Identity())
        for stage in self.stages:
            fold_conv_norms(stage.downsample)
            for block in stage.blocks:
                block.switch_to_deploy()
        self.deployed = True
        return self

    # ---------------------------------------------------------- weights --
    def unused_key_reason(self, key: str) -> Optional[str]:
        if re.fullmatch(r'norm\.(running_mean|running_var|'
                        r'num_batches_tracked)', key):
            return 'classifier'  # the statistics of its final BatchNorm
        return super().unused_key_reason(key)

    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert an EfficientFormerV2 state dict to this package's
        layout.

        Layouts, detected from the keys:

        - ``mixer_backbones``: ``stem.conv1``, ``stages.{s}.blocks.{j}``
          with ``layer_scale{1,2}.weight``; returned unchanged.
        - ``timm`` (also the Hugging Face hub files): ``stem.conv{1,2}.
          {conv,bn}``, ``stages.{s}.downsample.conv.{conv,bn}`` and
          ``stages.3.downsample.attn``, blocks with ``ls{1,2}.gamma``,
          ``mlp.{fc1,mid,fc2}.{conv,bn}``, conv-BN pairs as ``{conv,bn}``,
          ``norm``, ``head``, ``head_dist``.
        - ``snap-research`` (the release ``eformer_*_450.pth``, and the
          backbones of the released detection and segmentation models):
          ``patch_embed.{0,1,3,4}``, blocks ``network.{0,2,4,6}.{j}``,
          downsamples ``network.{1,3}.{proj,norm}`` and ``network.5.{conv,
          bn,attn}``, conv-BN pairs as ``{0,1}`` (``proj.{1,2}`` after
          the activation), ``layer_scale_{1,2}``, ``norm``, ``head``,
          ``dist_head``. The dense models' trained ``attention_biases_seg``
          tables become ``dense_attention_biases`` (the model then runs in
          ``'dense'`` bias mode, as they were trained); the ImageNet
          ``attention_biases`` they keep unused stays and is ignored on
          loading.

        The ``attention_bias_idxs`` buffers are dropped after a check of
        their shape. Keys of no known name pass unchanged (and are
        refused on loading); two keys converting to one name raise
        :class:`CheckpointError`.
        """
        keys = list(state_dict)
        if not any(_DEPTHWISE_FFN.search(k) for k in keys):
            raise CheckpointError(
                'not an EfficientFormerV2 checkpoint: no depthwise FFN '
                "convolution ('.mlp.mid.weight', or '.mlp.mid.conv.weight' "
                f'in timm files); first keys: {keys[:5]}')
        if 'stem.conv1.weight' in state_dict:
            return dict(state_dict), 'mixer_backbones'
        if 'stem.conv1.conv.weight' in state_dict:
            return _convert(state_dict, _rename_timm), 'timm'
        if 'patch_embed.0.weight' in state_dict:
            return _convert(state_dict, _rename_snap), 'snap-research'
        raise CheckpointError(
            'not an EfficientFormerV2 checkpoint in a known layout '
            "(mixer_backbones: 'stem.conv1.weight'; timm: "
            "'stem.conv1.conv.weight'; snap-research: "
            "'patch_embed.0.weight'); first keys: "
            f'{keys[:5]}')


# ------------------------------------------------------------ converters --
# What only EfficientFormerV2 has: the depthwise conv of its FFNs.
_DEPTHWISE_FFN = re.compile(r'\.mlp\.mid\.(conv\.)?weight$')


def _rename_timm(key: str, keys: AbstractSet[str]) -> str:
    key = re.sub(r'^stem\.conv([12])\.conv\.', r'stem.conv\1.', key)
    key = re.sub(r'^stem\.conv([12])\.bn\.', r'stem.norm\1.', key)
    key = re.sub(r'\.downsample\.conv\.bn\.', '.downsample.conv.norm.', key)
    key = re.sub(r'^(stages\.[12]\.downsample)\.conv\.(conv|norm)\.',
                 r'\1.\2.', key)
    key = key.replace('.downsample.attn.', '.downsample.attention.')
    match = re.match(r'(.*\.mlp)\.(fc1|mid|fc2)\.(conv|bn)\.(.*)', key)
    if match:
        norm = {'fc1': 'norm1', 'mid': 'mid_norm', 'fc2': 'norm2'}
        name = match[2] if match[3] == 'conv' else norm[match[2]]
        return f'{match[1]}.{name}.{match[4]}'
    key = re.sub(r'\.bn\.(weight|bias|running_mean|running_var|'
                 r'num_batches_tracked)$', r'.norm.\1', key)
    return re.sub(r'\.ls([12])\.gamma$', r'.layer_scale\1.weight', key)


def _rename_snap(key: str, keys: AbstractSet[str]) -> str:
    stem = {'0': 'conv1', '1': 'norm1', '3': 'conv2', '4': 'norm2'}
    match = re.match(r'patch_embed\.(\d)\.(.*)', key)
    if match and match[1] in stem:
        return f'stem.{stem[match[1]]}.{match[2]}'
    match = re.match(r'network\.(\d+)\.(.*)', key)
    if not match:
        if key.startswith('dist_head.'):
            return 'head_dist.' + key[len('dist_head.'):]
        return key
    position, rest = int(match[1]), match[2]
    if position % 2 == 0:
        prefix = f'stages.{position // 2}.blocks.'
        rest = re.sub(r'\.layer_scale_([12])$', r'.layer_scale\1.weight',
                      rest)
    elif position < 5:  # a stride-2 conv-BN
        prefix = f'stages.{position // 2 + 1}.downsample.'
        rest = re.sub(r'^proj\.', 'conv.', rest)
    else:  # the conv-BN and the attention before the last stage
        prefix = f'stages.{position // 2 + 1}.downsample.'
        rest = re.sub(r'^conv\.', 'conv.conv.', rest)
        rest = re.sub(r'^bn\.', 'conv.norm.', rest)
        rest = re.sub(r'^attn\.', 'attention.', rest)
    # Inside the attentions: nn.Sequential indices to names (the output
    # projection's conv and BN follow its activation, at 1 and 2).
    layer = ('conv.', 'norm.')
    rest = re.sub(r'\.q\.local\.0\.', '.q.local.', rest)
    rest = re.sub(r'\.q\.proj\.([01])\.',
                  lambda m: '.q.proj.' + layer[int(m[1])], rest)
    rest = re.sub(r'\b(token_mixer|attention)\.proj\.([12])\.',
                  lambda m: f'{m[1]}.proj.' + layer[int(m[2]) - 1], rest)
    rest = re.sub(r'\.(stride_conv|q|k|v|v_local)\.([01])\.',
                  lambda m: f'.{m[1]}.' + layer[int(m[2])], rest)
    return prefix + rest


def _convert(state_dict: StateDict, rename) -> StateDict:
    keys = set(state_dict)
    renamed: List[Tuple[str, str, torch.Tensor]] = []
    for key, value in state_dict.items():
        if key.endswith(('attention_bias_idxs', 'attention_bias_idxs_seg')):
            _check_pair_indices(key, value, state_dict)
            continue
        new = rename(key, keys)
        if new.endswith('.attention_biases_seg'):
            new = new[:-len('attention_biases_seg')] + DENSE_TABLE_KEY
        if re.search(r'\.layer_scale[12]\.weight$', new):
            value = value.reshape(-1)
        renamed.append((key, new, value))
    return collect_renamed(renamed, 'EfficientFormerV2')


def _check_pair_indices(key: str, value: torch.Tensor,
                        state_dict: StateDict) -> None:
    """The derived index buffers are dropped; refuse one that does not fit
    its table (``[Nq, R*R]`` for a ``[heads, R*R]`` table)."""
    table = state_dict.get(key.replace('_bias_idxs', '_biases'))
    if table is None:
        raise CheckpointError(f'{key} has no bias table beside it')
    if value.dim() != 2 or value.shape[-1] != table.shape[-1]:
        raise CheckpointError(
            f'{key}: shape {tuple(value.shape)} does not fit its table of '
            f'shape {tuple(table.shape)}')
