"""The MetaFormer baselines as dense backbones: IdentityFormer,
PoolFormerV2, ConvFormer and CAFormer.

From `MetaFormer Baselines for Vision <https://arxiv.org/abs/2210.13452>`_:
one skeleton (a conv stem of stride 4 followed by a norm, then four stages
of :class:`~.metaformer.MetaFormerBlock` with a norm-then-conv stride-2
downsample before stages 1-3) and four token mixers: none (IdentityFormer),
pooling (PoolFormerV2), separable convolutions (ConvFormer) and separable
convolutions in stages 0-1 with global attention in stages 2-3 (CAFormer).
Every block is ``x = rs * x + mixer(norm(x))`` and ``x = rs * x +
mlp(norm(x))``, with bias-free norms, a StarReLU MLP without biases and a
residual scale (``rs``) in stages 2-3.

ConvFormer's and CAFormer's blocks run channels last, (N, H, W, C), as
the authors' code does: the MLPs and the separable convs' pointwise layers
are plain matrix products, the channel norms normalise the last dimension,
attention reads the tokens without a copy and the depthwise convs see a
channels-last NCHW view; each stage takes and returns NCHW tensors (views
of the same memory). IdentityFormer's and PoolFormerV2's blocks run on
NCHW tensors, as PoolFormer's: their norm normalises over (C, H, W) and
their mixer pools over (H, W), for which GroupNorm and pooling kernels take
NCHW tensors; their MLPs are 1x1 convolutions (the authors' linear weights
reshaped on loading). Their memory stays in the channels-last order the
stem's and downsamples' LayerNorms leave (as in timm's models): on CPUs,
pooling runs faster on it than on contiguous NCHW memory (measured with
tools/benchmark.py; a contiguous copy per stage made PoolFormerV2-S12 0.65x
as fast in inference).

RandFormer is not provided: its frozen random mixing matrix is defined on
the 196 (stage 2) and 49 (stage 3) tokens of a 224x224 input only. Running
it at another size means either a different random matrix (not the
pretrained model) or mixing within 14x14 windows (a different model, whose
padding at sizes that are not multiples of the window has no published
counterpart); neither keeps what the weights meant.
"""
import os
import re
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import MeanTokens, StateDict, collect_renamed
from .layers import ConvMlp, PoolingMixer, StarReLU, build_activation
from .metaformer import (MetaFormerBackbone, MetaFormerBlock, MetaFormerStage,
                         drop_path_rates)
from .validation import check_arguments

# ------------------------------------------------------------- layers --


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of channels-last maps (the last
    dimension), with the result in the input's dtype. The baselines use it
    without a bias (``bias=False``) and with ``eps=1e-6``."""

    def __init__(self,
                 channels: int,
                 eps: float = 1e-6,
                 bias: bool = False) -> None:
        super().__init__(channels, eps=eps, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


class SampleNorm(nn.Module):
    """Normalise each sample over all its tokens and channels (GroupNorm
    with one group), then scale per channel; no bias.

    The "modified layer norm" of IdentityFormer and PoolFormerV2, computed
    as one ``group_norm`` (the scale fused in, so that backward keeps only
    the input).

    Args:
        channels (int): Channels.
        eps (float): Added to the variance. Defaults to 1e-6.
        channels_last (bool): Inputs are (N, H, W, C) maps rather than
            NCHW. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 eps: float = 1e-6,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nchw = x.permute(0, 3, 1, 2) if self.channels_last else x
        out = F.group_norm(nchw, 1, self.weight, eps=self.eps).to(x.dtype)
        return out.permute(0, 2, 3, 1) if self.channels_last else out

    def extra_repr(self) -> str:
        return f'{self.weight.numel()}, eps={self.eps}'


class LinearMlp(nn.Module):
    """Channel MLP on channels-last maps: ``fc2(act(fc1(x)))``, no biases
    by default.

    Args:
        channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
        act_cfg (str | dict): Activation. Defaults to ``'StarReLU'``.
        bias (bool): Biases in the linear layers. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 hidden_channels: int,
                 act_cfg: Union[str, dict] = 'StarReLU',
                 bias: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels, bias=bias)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_channels, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IdentityMixer(nn.Module):
    """No token mixing (IdentityFormer): the branch adds the normalised
    input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SeparableConvMixer(nn.Module):
    """ConvFormer's token mixer on channels-last maps: a pointwise layer
    widening the channels ``expansion`` times, StarReLU, a depthwise
    ``kernel_size`` conv and a pointwise layer back; no biases.

    Args:
        channels (int): Input and output channels.
        expansion (float): Hidden channels over ``channels``.
            Defaults to 2.
        kernel_size (int): Depthwise kernel (odd). Defaults to 7.
    """

    def __init__(self,
                 channels: int,
                 expansion: float = 2.,
                 kernel_size: int = 7) -> None:
        super().__init__()
        hidden = int(expansion * channels)
        self.pwconv1 = nn.Linear(channels, hidden, bias=False)
        self.act1 = StarReLU()
        self.dwconv = nn.Conv2d(
            hidden,
            hidden,
            kernel_size,
            padding=kernel_size // 2,
            groups=hidden,
            bias=False)
        self.pwconv2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pwconv1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)


class GlobalAttention(nn.Module):
    """Multi-head self-attention over every token of a channels-last map
    (CAFormer's stages 2-3), without biases.

    ``F.scaled_dot_product_attention`` computes it, so where a fused kernel
    exists (flash or memory-efficient attention on GPUs, the flash kernel
    on CPUs) no (tokens x tokens) matrix is stored, at any map size.

    Args:
        channels (int): Input and output channels.
        head_dim (int): Channels per head; ``channels // head_dim`` heads
            (at least one). Defaults to 32.
    """

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(channels // head_dim, 1)
        inner = self.num_heads * head_dim
        self.qkv = nn.Linear(channels, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads,
                                  self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.transpose(1, 2).reshape(batch, height, width, -1)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f'num_heads={self.num_heads}, head_dim={self.head_dim}'


class Stem(nn.Module):
    """Conv 7x7 of stride 4 (padding 2), then a bias-free channel
    LayerNorm; NCHW in, NCHW out (channels-last memory)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, channels, kernel_size=7, stride=4, padding=2)
        self.norm = ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Downsampling(nn.Module):
    """A bias-free channel LayerNorm, then conv 3x3 of stride 2 (padding
    1); channels last in and out, or NCHW in and out."""

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(in_channels)
        self.conv = nn.Conv2d(
            in_channels, channels, kernel_size=3, stride=2, padding=1)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            x = x.permute(0, 2, 3, 1)
        x = self.conv(self.norm(x).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1) if self.channels_last else x


# --------------------------------------------------------- backbones --


class MetaFormerBaseline(MetaFormerBackbone):
    """The skeleton the four baseline families share; a family is this
    class with an arch table, its token mixers (``mixers``: one of
    ``'identity'``, ``'pooling'``, ``'sepconv'``, ``'attention'`` per
    stage), its block norm (``block_norm``: ``'sample'`` or ``'channel'``),
    the layout its blocks run in (``channels_last``; pooling only in NCHW,
    separable convs and attention only channels last) and its ImageNet head
    (``mlp_head``).

    Args:
        arch (str | dict, optional): A key of the family's ``arch_zoo`` or
            a dict with keys ``depths`` and ``widths`` (four stages).
            Defaults to None (the family's first, smallest arch).
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages (0-3, negative allowed)
            whose outputs are returned, at strides 4, 8, 16 and 32.
            Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 with their output norms. Defaults to -1.
        norm_eval (bool): Put BatchNorm layers in eval mode in ``train()``;
            the baselines have none (their norms are fixed by the published
            models). Defaults to False.
        with_cp (bool): Checkpoint every block to save memory. Defaults to
            False.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks up to this rate. Defaults to 0.
        act_cfg (str | dict): Activation of the MLPs. Defaults to
            ``dict(type='StarReLU')``.
        layer_scale_init_value (float, optional): Initial layer scale of
            every branch; None (as published) for none. Defaults to None.
        res_scale_init_values (Sequence[float | None]): Initial residual
            scale per stage; None for none. Defaults to
            ``(None, None, 1., 1.)`` (as published).
        mlp_ratio (float): MLP hidden width over the block width.
            Defaults to 4.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.
    """
    arch_keys = ('depths', 'widths')
    mixers: Tuple[str, ...] = ()
    block_norm = 'channel'
    channels_last = True
    mlp_head = False
    pool_size = 3
    sepconv_kernel_size = 7
    head_dim = 32
    tiny_arch = dict(depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
    # The 7x7 stride-4 stem with padding 2 needs at least 3 pixels.
    min_input_size = 3

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 act_cfg: Union[str, dict] = dict(type='StarReLU'),
                 layer_scale_init_value: Optional[float] = None,
                 res_scale_init_values: Sequence[Optional[float]] = (None,
                                                                     None, 1.,
                                                                     1.),
                 mlp_ratio: float = 4.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        name = type(self).__name__
        check_arguments(
            name,
            drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            res_scale_init_values=res_scale_init_values,
            mlp_ratio=mlp_ratio)
        settings = self.init_arch(
            next(iter(self.arch_zoo)) if arch is None else arch)
        depths, widths = settings['depths'], settings['widths']
        num_stages = len(self.mixers)
        if len(depths) != num_stages or len(widths) != num_stages:
            raise ValueError(
                f'{name} arch: depths {depths} and widths {widths} must '
                f'both have {num_stages} entries (one per stage)')
        if len(res_scale_init_values) != num_stages:
            raise ValueError(
                f'{name}: res_scale_init_values {res_scale_init_values!r} '
                f'must have {num_stages} entries (one per stage)')
        self.stem = Stem(in_channels, widths[0])
        self.stages = nn.ModuleList()
        rates = drop_path_rates(depths, drop_path_rate)
        for i, (depth, width) in enumerate(zip(depths, widths)):
            downsample = None if i == 0 else Downsampling(
                widths[i - 1], width, self.channels_last)
            blocks = [
                MetaFormerBlock(
                    width,
                    token_mixer=self.build_mixer(self.mixers[i], width),
                    mlp=self.build_mlp(width, int(width * mlp_ratio), act_cfg),
                    norm1=self.build_block_norm(width),
                    norm2=self.build_block_norm(width),
                    layer_scale_init_value=layer_scale_init_value,
                    drop_path=rate,
                    res_scale_init_value=res_scale_init_values[i],
                    channel_dim=-1 if self.channels_last else 1)
                for rate in rates[i]
            ]
            self.stages.append(MetaFormerStage(downsample, blocks))
        self.setup_outputs(widths)

    def build_mixer(self, kind: str, channels: int) -> nn.Module:
        if kind == 'identity':
            return IdentityMixer()
        if kind == 'pooling' and not self.channels_last:
            return PoolingMixer(self.pool_size)
        if kind == 'sepconv' and self.channels_last:
            return SeparableConvMixer(
                channels, kernel_size=self.sepconv_kernel_size)
        if kind == 'attention' and self.channels_last:
            return GlobalAttention(channels, self.head_dim)
        layout = 'channels-last' if self.channels_last else 'NCHW'
        raise ValueError(f'{type(self).__name__}: no {kind!r} token mixer '
                         f'for {layout} blocks')

    def build_mlp(self, channels: int, hidden: int,
                  act_cfg: Union[str, dict]) -> nn.Module:
        if self.channels_last:
            return LinearMlp(channels, hidden, act_cfg)
        return ConvMlp(channels, hidden, act_cfg, bias=False)

    def build_block_norm(self, channels: int) -> nn.Module:
        if self.block_norm == 'sample':
            return SampleNorm(channels, channels_last=self.channels_last)
        if not self.channels_last:
            raise ValueError(f'{type(self).__name__}: channel LayerNorms '
                             f'need channels-last blocks')
        return ChannelLayerNorm(channels)

    # -------------------------------------------------------- forward ----
    def forward_unit(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``index`` on an NCHW map; channels-last blocks run on the
        (N, H, W, C) view and the result is returned as an NCHW view."""
        if not self.channels_last:
            return super().forward_unit(index, x)
        stage = self.stages[index]
        x = stage.downsample(x.permute(0, 2, 3, 1))
        for block in stage.blocks:
            x = self.run_block(block, x)
        return x.permute(0, 3, 1, 2)

    # ------------------------------------------------- family queries --
    @classmethod
    def classifier_head(cls,
                        channels: int,
                        num_classes: int = 1000) -> nn.Module:
        """Global average, LayerNorm, then a linear layer or (ConvFormer,
        CAFormer) the two-layer MLP head with a squared ReLU and a
        LayerNorm."""
        if not cls.mlp_head:
            fc = nn.Linear(channels, num_classes)
        else:
            fc = nn.Sequential(
                nn.Linear(channels, 4 * channels), nn.ReLU(),
                nn.LayerNorm(4 * channels), nn.Linear(4 * channels,
                                                      num_classes))
        return nn.Sequential(MeanTokens(), nn.LayerNorm(channels, eps=1e-6),
                             fc)

    @classmethod
    def convert_checkpoint_file(
            cls,
            checkpoint: str,
            prefix: Optional[str] = None) -> Tuple[StateDict, str]:
        """As :meth:`BaseDenseBackbone.convert_checkpoint_file`, refusing
        first a file, URL or ``hf-hub:`` name that names another baseline
        family: IdentityFormer and PoolFormerV2 (like RandFormer without
        its frozen matrices) have the same keys and shapes, so only the
        name can tell their weights apart."""
        name = os.path.basename(str(checkpoint)).lower()
        named = [family for family in _BASELINE_NAMES if family in name]
        if named and cls.family_name not in named:
            raise CheckpointError(
                f'{checkpoint!r} is named as a {named[0]} checkpoint, but '
                f'this is {cls.__name__}; the baselines share key names '
                f'and shapes, so loading it would give no error and a '
                f'wrong model. Rename the file if it does hold '
                f'{cls.__name__} weights')
        return super().convert_checkpoint_file(checkpoint, prefix)

    def unused_key_reason(self, key: str) -> Optional[str]:
        # The final norm (head.norm) and the linear or MLP head (head.fc).
        return 'classifier' if key.startswith('head.') else None

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert a checkpoint of the baselines to this package's layout.

        Layouts, detected from the keys:

        - ``sail-sg`` (the authors' release files): ``downsample_layers.0``
          is the stem (``conv``, ``post_norm``), ``downsample_layers.{i}``
          the downsamples (``pre_norm``, ``conv``), blocks under
          ``stages.{i}.{j}``, scales as ``*_scale{1,2}.scale``, the
          classifier as ``norm`` and ``head``.
        - ``timm`` (also Hugging Face ``timm/...``): ``stem.conv``,
          ``stem.norm``, ``stages.{i}.downsample``, blocks under
          ``stages.{i}.blocks.{j}``, the MLPs and separable convs of the
          convolutional stages as 1x1 convs, ``head.norm``, ``head.fc``.
        - ``mixer_backbones``: timm's names, scales as
          ``*_scale{1,2}.weight``, and the pointwise layers as linear layers
          in channels-last blocks (ConvFormer, CAFormer), as 1x1 convs in
          NCHW blocks (IdentityFormer, PoolFormerV2); returned unchanged.

        The classifier (``head.*`` here, as in timm) is ignored on
        loading.

        Two keys converting to one name raise :class:`CheckpointError`;
        keys of no known name pass unchanged and are refused on loading.
        """
        if 'downsample_layers.0.conv.weight' in state_dict:
            return _pointwise(_convert_sail(state_dict),
                              cls.channels_last), 'sail-sg'
        if 'stem.conv.weight' in state_dict:
            converted = _pointwise(
                _convert_timm(state_dict), cls.channels_last)
            unchanged = list(converted) == list(state_dict) and all(
                converted[k] is state_dict[k] for k in converted)
            return converted, 'mixer_backbones' if unchanged else 'timm'
        raise CheckpointError(
            f'not a {cls.__name__} checkpoint in a known layout '
            "(sail-sg: 'downsample_layers.0.conv.weight'; timm or "
            "mixer_backbones: 'stem.conv.weight'); first keys: "
            f'{list(state_dict)[:5]}')


# Names of the baseline families in release files and timm model names.
_BASELINE_NAMES = ('identityformer', 'randformer', 'poolformerv2',
                   'convformer', 'caformer')
_SCALE = re.compile(r'((?:layer|res)_scale[12])\.scale$')
# Linear layers in the authors' code and timm's attention stages, 1x1 convs
# in timm's other stages.
_POINTWISE = re.compile(r'\.(mlp\.fc[12]|token_mixer\.pwconv[12])\.weight$')


def _pointwise(state_dict: StateDict, channels_last: bool) -> StateDict:
    """The pointwise layers' weights as linear (channels-last blocks) or
    1x1-conv (NCHW blocks) weights, whichever the layout stored."""
    out = {}
    for key, value in state_dict.items():
        if _POINTWISE.search(key):
            if channels_last and value.dim() == 4:
                value = value.flatten(1)
            elif not channels_last and value.dim() == 2:
                value = value[:, :, None, None]
        out[key] = value
    return out


def _convert_timm(state_dict: StateDict) -> StateDict:
    return collect_renamed(((key, _SCALE.sub(r'\1.weight', key), value)
                            for key, value in state_dict.items()), 'timm')


def _convert_sail(state_dict: StateDict) -> StateDict:
    renamed = []
    for key, value in state_dict.items():
        new = _SCALE.sub(r'\1.weight', key)
        new = re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', new)
        new = re.sub(r'^downsample_layers\.0\.post_norm\.', 'stem.norm.', new)
        new = re.sub(r'^downsample_layers\.0\.', 'stem.', new)
        new = re.sub(r'^downsample_layers\.(\d+)\.pre_norm\.',
                     r'stages.\1.downsample.norm.', new)
        new = re.sub(r'^downsample_layers\.(\d+)\.', r'stages.\1.downsample.',
                     new)
        new = re.sub(r'^head\.', 'head.fc.', new)
        new = re.sub(r'^norm\.', 'head.norm.', new)
        renamed.append((key, new, value))
    return collect_renamed(renamed, 'sail-sg')


_SMALL = dict(depths=[2, 2, 6, 2], widths=[64, 128, 320, 512])
_POOLFORMER_ARCHS = {
    's12': _SMALL,
    's24': dict(depths=[4, 4, 12, 4], widths=[64, 128, 320, 512]),
    's36': dict(depths=[6, 6, 18, 6], widths=[64, 128, 320, 512]),
    'm36': dict(depths=[6, 6, 18, 6], widths=[96, 192, 384, 768]),
    'm48': dict(depths=[8, 8, 24, 8], widths=[96, 192, 384, 768]),
}
_CONVFORMER_ARCHS = {
    's18': dict(depths=[3, 3, 9, 3], widths=[64, 128, 320, 512]),
    's36': dict(depths=[3, 12, 18, 3], widths=[64, 128, 320, 512]),
    'm36': dict(depths=[3, 12, 18, 3], widths=[96, 192, 384, 576]),
    'b36': dict(depths=[3, 12, 18, 3], widths=[128, 256, 512, 768]),
}
# Parameters (millions) and GMACs at 224 published in the authors' README;
# the two families of each pair share their weights' shapes.
_POOLFORMER_PUBLISHED = {
    's12': dict(params=11.9, gmacs=1.8),
    's24': dict(params=21.3, gmacs=3.4),
    's36': dict(params=30.8, gmacs=5.0),
    'm36': dict(params=56.1, gmacs=8.8),
    'm48': dict(params=73.3, gmacs=11.5),
}


@MODELS.register_module()
class IdentityFormer(MetaFormerBaseline):
    """IdentityFormer backbone with a 4/8/16/32 feature pyramid: the
    MetaFormer baseline without token mixing (an ablation baseline), arch
    ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'`` or ``'m48'``.

    See :class:`MetaFormerBaseline` for the arguments. Its weights have
    the same keys and shapes as PoolFormerV2's of the same arch; a
    checkpoint whose name says ``poolformerv2`` is refused.

    Example:
        >>> import torch
        >>> from mixer_backbones import IdentityFormer
        >>> model = IdentityFormer('s12').eval()
        >>> for level in model(torch.rand(1, 3, 197, 263)):
        ...     print(tuple(level.shape))
        (1, 64, 49, 66)
        (1, 128, 25, 33)
        (1, 320, 13, 17)
        (1, 512, 7, 9)
    """
    family_name = 'identityformer'
    arch_zoo = _POOLFORMER_ARCHS
    published = _POOLFORMER_PUBLISHED
    mixers = ('identity', ) * 4
    block_norm = 'sample'
    channels_last = False


@MODELS.register_module()
class PoolFormerV2(MetaFormerBaseline):
    """PoolFormerV2 backbone with a 4/8/16/32 feature pyramid: PoolFormer
    in the baselines' skeleton (pooling mixer, StarReLU, bias-free norms,
    residual scales), arch ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'`` or
    ``'m48'``.

    See :class:`MetaFormerBaseline` for the arguments.

    Example:
        >>> import torch
        >>> from mixer_backbones import PoolFormerV2
        >>> model = PoolFormerV2('s12').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 64, 200, 304)
        (1, 128, 100, 152)
        (1, 320, 50, 76)
        (1, 512, 25, 38)
    """
    family_name = 'poolformerv2'
    arch_zoo = _POOLFORMER_ARCHS
    published = _POOLFORMER_PUBLISHED
    # The published GMACs (fvcore) leave out the pooling.
    published_uncounted_ops = ('avg_pool2d', )
    timm_names = {arch: f'poolformerv2_{arch}' for arch in arch_zoo}
    mixers = ('pooling', ) * 4
    block_norm = 'sample'
    channels_last = False


@MODELS.register_module()
class ConvFormer(MetaFormerBaseline):
    """ConvFormer backbone with a 4/8/16/32 feature pyramid: separable
    convolutions (pointwise, StarReLU, depthwise 7x7, pointwise) as the
    token mixer, arch ``'s18'``, ``'s36'``, ``'m36'`` or ``'b36'``.

    See :class:`MetaFormerBaseline` for the arguments.

    Example:
        >>> import torch
        >>> from mixer_backbones import ConvFormer
        >>> model = ConvFormer('s18').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 64, 200, 304)
        (1, 128, 100, 152)
        (1, 320, 50, 76)
        (1, 512, 25, 38)
    """
    family_name = 'convformer'
    arch_zoo = _CONVFORMER_ARCHS
    # The README rounds the parameters to 27M, 40M, 57M and 100M; these
    # are the counts of the authors' models, to 0.1M.
    published = {
        's18': dict(params=26.8, gmacs=3.9),
        's36': dict(params=40.0, gmacs=7.6),
        'm36': dict(params=57.1, gmacs=12.8),
        'b36': dict(params=99.9, gmacs=22.6),
    }
    timm_names = {arch: f'convformer_{arch}' for arch in arch_zoo}
    mixers = ('sepconv', ) * 4
    mlp_head = True


@MODELS.register_module()
class CAFormer(MetaFormerBaseline):
    """CAFormer backbone with a 4/8/16/32 feature pyramid: ConvFormer's
    separable convolutions in stages 0-1 and global multi-head attention
    (head dim 32) over every token of stages 2-3, arch ``'s18'``,
    ``'s36'``, ``'m36'`` or ``'b36'``.

    Attention runs through ``F.scaled_dot_product_attention`` (see
    :class:`GlobalAttention`): at 800x1344 stage 2 attends over 4,200
    tokens.

    See :class:`MetaFormerBaseline` for the arguments.

    Example:
        >>> import torch
        >>> from mixer_backbones import CAFormer
        >>> model = CAFormer('s18').eval()
        >>> for level in model(torch.rand(1, 3, 512, 512)):
        ...     print(tuple(level.shape))
        (1, 64, 128, 128)
        (1, 128, 64, 64)
        (1, 320, 32, 32)
        (1, 512, 16, 16)
    """
    family_name = 'caformer'
    arch_zoo = _CONVFORMER_ARCHS
    # The README rounds the parameters to 26M, 39M, 56M and 99M; these are
    # the counts of the authors' models, to 0.1M.
    published = {
        's18': dict(params=26.3, gmacs=4.1),
        's36': dict(params=39.3, gmacs=8.0),
        'm36': dict(params=56.2, gmacs=13.2),
        'b36': dict(params=98.8, gmacs=23.2),
    }
    timm_names = {arch: f'caformer_{arch}' for arch in arch_zoo}
    mixers = ('sepconv', 'sepconv', 'attention', 'attention')
    mlp_head = True
