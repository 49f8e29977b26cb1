"""ConvMixer (patches + depthwise/pointwise conv mixing) as a dense
backbone, with a 4/8/16/32 feature pyramid built from its isotropic
stride-``patch_size`` features."""
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import BaseDenseBackbone, MeanTokens, StateDict
from .layers import (CfgType, DropPath, GroupNorm1, add_residual,
                     build_activation, build_norm)
from .validation import check_arguments


class ActivationNorm(nn.Module):
    """``norm(act(x))``: the activation then BatchNorm that follow every
    convolution of ConvMixer.

    Keeping the pair in its own module means no BatchNorm is ever a
    sibling of a convolution, so mmcv's ``fuse_conv_bn`` (which folds a
    BatchNorm into the last convolution registered before it in the same
    parent, whatever lies between) leaves ConvMixer unchanged instead of
    folding a post-activation BatchNorm into the convolution before the
    activation, which would change the outputs.

    After :meth:`ConvMixer.switch_to_deploy` the BatchNorm is replaced by
    a :class:`ChannelAffine` with the same effect.

    Args:
        act_cfg (str | dict): Activation.
        channels (int): Channels of the norm.
        norm_cfg (dict): The norm. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 act_cfg: CfgType,
                 channels: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.act = build_activation(act_cfg)
        self.norm: nn.Module = build_norm(norm_cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(x))


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel, either part optional; what an
    eval-mode BatchNorm becomes in :meth:`ConvMixer.switch_to_deploy`.

    Args:
        scale (Tensor, optional): Per-channel factor, or None for 1.
        shift (Tensor, optional): Per-channel offset, or None for 0.
    """

    def __init__(self, scale: Optional[torch.Tensor],
                 shift: Optional[torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer('scale', scale)
        self.register_buffer('shift', shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            return x if self.scale is None else x * self._view(self.scale, x)
        if self.scale is None:
            return x + self._view(self.shift, x)
        # One pass over x instead of a multiply then an add.
        return torch.addcmul(
            self._view(self.shift, x), x, self._view(self.scale, x))

    @staticmethod
    def _view(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.to(like.dtype).view(1, -1, 1, 1)


class ConvActivationNorm(nn.Module):
    """``norm(act(conv(x)))``, the unit ConvMixer is made of.

    Args:
        conv (nn.Conv2d): The convolution.
        act_cfg (str | dict): Activation.
        norm_cfg (dict): The norm. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 conv: nn.Conv2d,
                 act_cfg: CfgType,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.conv = conv
        self.act_norm = ActivationNorm(act_cfg, conv.out_channels, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_norm(self.conv(x))


class ConvMixerBlock(nn.Module):
    """``x + BN(act(depthwise_conv(x)))`` then ``BN(act(conv1x1(x)))``.

    Only the spatial (token) mixer is residual, as in the paper.

    Args:
        channels (int): Width of the block.
        kernel_size (int): Depthwise kernel (``padding='same'``).
        act_cfg (str | dict): Activation.
        drop_path (float): Stochastic depth of the token-mixing branch.
            Defaults to 0.
        norm_cfg (dict): The norms. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 act_cfg: CfgType,
                 drop_path: float = 0.,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.token_mixer = ConvActivationNorm(
            nn.Conv2d(
                channels,
                channels,
                kernel_size,
                groups=channels,
                padding='same'), act_cfg, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())
        self.channel_mixer = ConvActivationNorm(
            nn.Conv2d(channels, channels, 1), act_cfg, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(x, self.drop_path(self.token_mixer(x)))
        return self.channel_mixer(x)


def pyramid_size(size: int, stride: int) -> int:
    """Height (or width) of the stride-``stride`` level for an input of
    ``size`` pixels, as this package's hierarchical backbones give it: a
    7x7 stride-4 padding-2 stem (``(size - 3) // 4 + 1``), then stride-2
    3x3 padding-1 convs (``ceil(n / 2)`` each).

    ``stride`` must be 4 times a power of two.
    """
    if stride < 4 or stride & (stride - 1):
        raise ValueError(f'pyramid strides must be powers of two >= 4, got '
                         f'{stride}')
    size = (size - 3) // 4 + 1
    while stride > 4:
        size, stride = -(-size // 2), stride // 2
    return size


def resampling_weights(out_size: int, out_stride: float, in_size: int,
                       in_stride: float) -> torch.Tensor:
    """``[out_size, in_size]`` weights that resample one axis of a map
    with cells of ``in_stride`` pixels to cells of ``out_stride`` pixels,
    both grids starting at pixel 0 (cell ``i`` covers ``[i * stride,
    (i + 1) * stride)``), so the result is aligned with the input to the
    pixel whatever the ratio of the strides:

    - shrinking (``out_stride >= in_stride``): each output cell is the
      average of the input cells under it, weighted by their overlap in
      pixels (area resampling; no aliasing);
    - growing: bilinear interpolation at the output cell's centre
      (``align_corners=False`` semantics, clamped at the borders).
    """
    out_index = torch.arange(out_size, dtype=torch.float64)
    in_index = torch.arange(in_size, dtype=torch.float64)
    if out_stride >= in_stride:
        low = torch.maximum(out_index[:, None] * out_stride,
                            in_index[None, :] * in_stride)
        high = torch.minimum((out_index[:, None] + 1) * out_stride,
                             (in_index[None, :] + 1) * in_stride)
        weights = (high - low).clamp(min=0)
    else:
        source = ((out_index + 0.5) * out_stride / in_stride - 0.5).clamp(
            0, in_size - 1)
        below = source.floor().clamp(max=max(in_size - 2, 0))
        fraction = (source - below)[:, None]
        weights = ((in_index[None, :] == below[:, None]) * (1 - fraction) +
                   (in_index[None, :] == below[:, None] + 1) * fraction)
    return (weights / weights.sum(1, keepdim=True)).float()


def resample(x: torch.Tensor, size: Tuple[int, int], out_stride: float,
             in_stride: float) -> torch.Tensor:
    """Resample an NCHW map of ``in_stride`` cells to ``size`` cells of
    ``out_stride`` (see :func:`resampling_weights`): two small matrix
    products, one per axis."""
    rows = resampling_weights(size[0], out_stride, x.shape[-2], in_stride)
    cols = resampling_weights(size[1], out_stride, x.shape[-1], in_stride)
    rows, cols = rows.to(x), cols.to(x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


class PyramidLevel(nn.Module):
    """Resample a stride-``in_stride`` map to one pyramid level.

    ``upsample`` (``mode='deconv'`` only, for levels finer than the patch
    stride): ``ceil(log2(in_stride / stride))`` 2x2 stride-2 transposed
    convs, each halving the channels and followed by GroupNorm(1, C) and
    GELU. Then a 1x1 ``projection`` to ``out_channels`` and ``norm``, and a
    pixel-aligned resampling to the level's size (:func:`resample`): area
    averaging when the map shrinks (before the projection, which is then
    cheaper), bilinear interpolation when it grows (after the projection,
    on the smaller map).

    Args:
        in_channels (int): Channels of the block output.
        out_channels (int): Channels of the level.
        in_stride (int): Stride of the block output (the patch size).
        stride (int): Stride of the level.
        mode (str): ``'interpolate'`` or ``'deconv'``.
        norm (str, optional): ``'gn'`` (GroupNorm(1, C)), ``'bn'`` or None.
    """

    def __init__(self, in_channels: int, out_channels: int, in_stride: int,
                 stride: int, mode: str, norm: Optional[str]) -> None:
        super().__init__()
        self.stride = stride
        layers: List[nn.Module] = []
        channels = in_channels
        self.upsampled_stride = float(in_stride)
        if mode == 'deconv' and in_stride > stride:
            for _ in range(math.ceil(math.log2(in_stride / stride))):
                layers += [
                    nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                    GroupNorm1(channels // 2),
                    nn.GELU()
                ]
                channels //= 2
                self.upsampled_stride /= 2
        self.upsample = nn.Sequential(*layers)
        self.projection = nn.Conv2d(channels, out_channels, 1)
        self.norm = _build_pyramid_norm(norm, out_channels)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        x = self.upsample(x)
        if self.stride >= self.upsampled_stride:
            x = resample(x, size, self.stride, self.upsampled_stride)
            return self.norm(self.projection(x))
        x = self.norm(self.projection(x))
        return resample(x, size, self.stride, self.upsampled_stride)


def _build_pyramid_norm(norm: Optional[str], channels: int) -> nn.Module:
    if norm is None:
        return nn.Identity()
    table = {'gn': GroupNorm1, 'bn': nn.BatchNorm2d}
    if not isinstance(norm, str) or norm.lower() not in table:
        raise ValueError(f"ConvMixer pyramid norm must be 'gn', 'bn' or "
                         f'None, got {norm!r}')
    return table[norm.lower()](channels)


@MODELS.register_module()
class ConvMixer(BaseDenseBackbone):
    """ConvMixer backbone with a 4/8/16/32 feature pyramid.

    From `Patches Are All You Need? <https://arxiv.org/abs/2201.09792>`_:
    a patch conv (kernel = stride = ``patch_size``) - activation - BN stem,
    then ``depth`` identical blocks ``x + BN(act(depthwise_conv(x)))``,
    ``BN(act(conv1x1(x)))`` (:class:`ConvMixerBlock`), all at stride
    ``patch_size`` (7 or 14 for the published weights).

    **Pyramid.** Detection and segmentation necks expect strides 4, 8, 16
    and 32. By default the ``out_indices`` blocks (sorted) feed the levels
    of ``pyramid['strides']`` in order, the earliest block the finest
    level, like the stages of a hierarchical backbone; a single selected
    block feeds every level (ViTDet's simple pyramid). Each level is a
    :class:`PyramidLevel`: a 1x1 projection to ``out_channels`` with a new
    GroupNorm(1, C) (the per-level norm of the MetaFormer dense models),
    and a resize to exactly the size of this package's hierarchical
    backbones (:func:`pyramid_size`: ``(H - 3) // 4 + 1`` at stride 4,
    halved with ceil per level, e.g. 97x131 -> 24x33, 12x17, 6x9, 3x5), so
    backbones are interchangeable under one config. The resampling is
    aligned to the pixel (:func:`resample`: the input is padded to a
    multiple of the patch size, patch ``i`` covers pixels ``[i p, (i + 1)
    p)`` and level cell ``j`` pixels ``[j s, (j + 1) s)``): shrinking
    averages the patches under each cell by their overlap (stride 7 or 14
    to 16/32 is no integer factor, and averaging does not alias); growing
    interpolates bilinearly, or with ``mode='deconv'`` runs learned 2x2
    transposed convs first (as ViTDet's simple pyramid; 7 -> 3.5, then
    resampled to 4). The projection runs on the smaller side of each
    resize. No pyramid weight is in an ImageNet checkpoint
    (``new_prefixes``).
    ``pyramid=None`` returns the selected blocks' raw stride-``patch_size``
    outputs and adds no parameters.

    Weights load from the locuslab release, timm / Hugging Face files
    (``.pth`` or ``.safetensors``), mmpretrain files and this package's own
    layout (see :meth:`convert_checkpoint`) through
    ``init_cfg=dict(type='Pretrained', checkpoint=PATH_OR_URL)``.

    Args:
        arch (str | dict): ``'1536_20'`` (k9, p7, GELU), ``'768_32'`` (k7,
            p7, ReLU), ``'1024_20'`` (k9, p14, GELU) or a dict with keys
            ``dim``, ``depth``, ``kernel_size``, ``patch_size`` and ``act``
            (``'gelu'``, ``'relu'`` or ``'silu'``). Defaults to
            ``'768_32'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int, optional): **Block** indices
            (0 .. depth-1, negative allowed) whose outputs are returned.
            Defaults to None: four evenly spaced blocks ending with the
            last (``depth * (i + 1) // 4 - 1``; 7, 15, 23, 31 for 768_32;
            4, 9, 14, 19 for the depth-20 archs), or the last block alone
            when ``depth < 4``.
        frozen_stages (int): In blocks: -1 freezes nothing, 0 the stem, k
            the stem and blocks 0..k-1. Defaults to -1.
        norm_eval (bool): Put every BatchNorm (stem, blocks and a ``'bn'``
            pyramid) in eval mode in ``train()``. Defaults to False.
        with_cp (bool): Checkpoint every block and pyramid level to save
            memory; outputs, gradients and BatchNorm statistics are
            unchanged. Defaults to False.
        drop_path_rate (float): Stochastic depth of the residual token
            mixers, increasing linearly over the blocks. Defaults to 0.
        pyramid (dict, optional): ``mode`` (``'interpolate'`` or
            ``'deconv'``), ``strides`` (one per selected block, powers of
            two >= 4) and ``norm`` (``'gn'``, ``'bn'`` or None); None for
            the raw block outputs. Defaults to
            ``dict(mode='interpolate', strides=(4, 8, 16, 32), norm='gn')``.
        out_channels (int | Sequence[int], optional): Channels of each
            pyramid level. Without a pyramid the outputs keep the block
            width ``dim`` and any other value raises. Defaults to None:
            256 with a pyramid, ``dim`` without.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.

    Example:
        >>> import torch
        >>> from mixer_backbones import ConvMixer
        >>> model = ConvMixer('768_32').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 256, 200, 304)
        (1, 256, 100, 152)
        (1, 256, 50, 76)
        (1, 256, 25, 38)
    """
    arch_zoo = {
        '1536_20': dict(dim=1536, depth=20, kernel_size=9, patch_size=7,
                        act='gelu'),
        '768_32': dict(dim=768, depth=32, kernel_size=7, patch_size=7,
                       act='relu'),
        '1024_20': dict(dim=1024, depth=20, kernel_size=9, patch_size=14,
                        act='gelu'),
    }  # yapf: disable
    arch_keys = ('dim', 'depth', 'kernel_size', 'patch_size', 'act')
    family_name = 'convmixer'
    published = {
        '1536_20': dict(params=51.6, gmacs=48.7),
        '768_32': dict(params=21.1, gmacs=19.6),
        '1024_20': dict(params=24.4, gmacs=5.6),
    }
    # The published GMACs leave out the padding='same' depthwise convs.
    published_uncounted_ops = ('depthwise_convolution', )
    timm_names = {
        '1536_20': 'convmixer_1536_20',
        '768_32': 'convmixer_768_32',
        '1024_20': 'convmixer_1024_20_ks9_p14',
    }
    mmpretrain = dict(
        type='ConvMixer',
        archs={'1536_20': '1536/20', '768_32': '768/32', '1024_20': '1024/20'},
        # mmpretrain's default GELU is not the paper's for 768/32.
        kwargs={'768_32': dict(act_cfg=dict(type='ReLU'))},
        stem='stem',
        units='stages')
    # Channels-last is slower for ConvMixer on CPUs: its depthwise
    # convolutions lose more than its 1x1 convolutions gain.
    cpu_memory_format = torch.contiguous_format
    # timm's forward_features has no pyramid.
    benchmark_kwargs = dict(pyramid=None)
    tiny_arch = dict(dim=16, depth=4, kernel_size=5, patch_size=7, act='gelu')
    unit_name = 'blocks'
    unit_word = 'block'
    classifier_prefixes = ('head.', )
    new_prefixes = ('out_norms.', 'pyramid.')
    default_pyramid = dict(
        mode='interpolate', strides=(4, 8, 16, 32), norm='gn')

    def __init__(self,
                 arch: Union[str, dict] = '768_32',
                 in_channels: int = 3,
                 out_indices: Optional[Union[int, Sequence[int]]] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = None,
                 pyramid: Optional[dict] = default_pyramid,
                 out_channels: Optional[Union[int, Sequence[int]]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        check_arguments(type(self).__name__, drop_path_rate=drop_path_rate)
        settings = self.init_arch(arch)
        dim, depth = settings['dim'], settings['depth']
        patch_size = settings['patch_size']
        act = settings['act'] if act_cfg is None else act_cfg
        build_activation(act)  # an unknown name raises here
        if depth < 1:
            raise ValueError(f'ConvMixer arch: depth must be >= 1, got '
                             f'{depth}')
        self.patch_size = patch_size
        # At least one patch, and 3 pixels for the stride-4 level size.
        self.min_input_size = patch_size if pyramid is None else max(
            patch_size, 3)
        self.stem = ConvActivationNorm(
            nn.Conv2d(in_channels, dim, patch_size, stride=patch_size), act,
            norm_cfg)
        rates = torch.linspace(
            0, drop_path_rate, depth, device='cpu').tolist()
        self.blocks = nn.ModuleList(
            ConvMixerBlock(dim, settings['kernel_size'], act, rate, norm_cfg)
            for rate in rates)
        if out_indices is None:
            self.out_indices = tuple(
                depth * (i + 1) // 4 - 1
                for i in range(4)) if depth >= 4 else (-1, )
        self.setup_outputs([dim] * depth, out_norm=None)
        self._build_pyramid(pyramid, out_channels, dim)
        # The pyramid was built after setup_outputs' freezing; it is
        # never frozen (it is new), but keep one place deciding that.
        self._freeze()

    def _build_pyramid(self, pyramid: Optional[dict],
                       out_channels: Optional[Union[int, Sequence[int]]],
                       dim: int) -> None:
        num_levels = len(self.out_indices)
        if pyramid is None:
            given = [out_channels] * num_levels if isinstance(
                out_channels, int) else out_channels
            if given is not None and list(given) != [dim] * num_levels:
                raise ValueError(
                    f'ConvMixer: out_channels={out_channels!r} needs a '
                    f'pyramid; with pyramid=None the outputs are the raw '
                    f'{dim}-channel blocks (pass out_channels=None)')
            self.pyramid = None
            self.pyramid_strides = None
            return
        settings = dict(self.default_pyramid, **pyramid)
        unknown = sorted(set(settings) - set(self.default_pyramid))
        if unknown:
            raise ValueError(f'ConvMixer: unknown pyramid options {unknown}; '
                             f'valid: {sorted(self.default_pyramid)}')
        if settings['mode'] not in ('interpolate', 'deconv'):
            raise ValueError(f"ConvMixer pyramid mode must be 'interpolate' "
                             f"or 'deconv', got {settings['mode']!r}")
        strides = tuple(settings['strides'])
        for stride in strides:
            pyramid_size(64, stride)  # validates
        if num_levels not in (1, len(strides)):
            raise ValueError(
                f'ConvMixer: the pyramid has {len(strides)} levels '
                f'(strides {strides}) but out_indices selects {num_levels} '
                f'blocks {self.out_indices}; select one block per level, '
                f'or one block for all levels')
        num_levels = len(strides)
        if out_channels is None:
            out_channels = 256
        if isinstance(out_channels, int):
            out_channels = [out_channels] * num_levels
        out_channels = list(out_channels)
        if len(out_channels) != num_levels:
            raise ValueError(f'ConvMixer: out_channels {out_channels} must '
                             f'have one entry per level ({num_levels})')
        self.pyramid_strides = strides
        self.pyramid = nn.ModuleList(
            PyramidLevel(dim, channels, self.patch_size, stride,
                         settings['mode'], settings['norm'])
            for channels, stride in zip(out_channels, strides))
        self.out_channels = out_channels

    # -------------------------------------------------------- forward ----
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The patch stem; with a pyramid, the input is first padded (with
        zeros, at the bottom and right) to a multiple of the patch size, so
        that the patches cover every pixel and the levels, resampled from
        them, are aligned with the image to the pixel. Without a pyramid it
        drops the remainder, as the classifier does."""
        if self.pyramid is not None:
            patch = self.patch_size
            height, width = x.shape[-2:]
            x = F.pad(x, (0, -width % patch, 0, -height % patch))
        return self.stem(x)

    def forward(self, x: torch.Tensor) -> tuple:
        self.check_input(x)
        features = self.unit_outputs(x)
        if self.pyramid is None:
            return tuple(features)
        return self.forward_pyramid(features, tuple(x.shape[-2:]))

    def forward_pyramid(self, features: List[torch.Tensor],
                        input_size: Tuple[int, int]) -> tuple:
        """Resample the selected blocks' outputs to the pyramid levels of
        an input of ``input_size`` (H, W)."""
        height, width = input_size
        if len(features) == 1:  # one block feeds every level
            features = features * len(self.pyramid)
        return tuple(
            self.run_block(level, feature, (pyramid_size(
                height, level.stride), pyramid_size(width, level.stride)))
            for level, feature in zip(self.pyramid, features))

    @classmethod
    def classifier_head(cls, channels: int,
                        num_classes: int = 1000) -> nn.Module:
        """Global average and a linear layer (no final norm)."""
        return nn.Sequential(MeanTokens(), nn.Linear(channels, num_classes))

    @classmethod
    def classifier_kwargs(cls) -> dict:
        return dict(out_indices=-1, pyramid=None)

    def min_single_image_training_size(self) -> int:
        # The patch grid is n // patch wide: one patch up to 2 * patch - 1.
        return 2 * self.patch_size

    # ----------------------------------------------------------- deploy --
    @torch.no_grad()
    def switch_to_deploy(self) -> 'ConvMixer':
        """Fold what can be folded exactly for inference (eval mode).

        Every BatchNorm of ConvMixer follows an activation, so none folds
        backwards into its convolution; and each feeds a residual
        connection or a zero-padded depthwise conv, so none folds forwards
        whole. What is exact:

        - each BatchNorm becomes a precomputed per-channel
          :class:`ChannelAffine` ``a * x + b``;
        - the token mixer's shift ``b`` moves into the channel mixer's
          bias: that 1x1 conv (no padding) is the only consumer of the
          residual sum, so ``W (x + a v + b) + c = W (x + a v) + (W b + c)``;
        - with ReLU (768_32), ``a * relu(t) = sign(a) * relu(|a| t)``, so
          ``|a|`` moves into the preceding convolution's weights and bias,
          leaving only signs (dropped when all are positive).

        The BatchNorm statistics are frozen into the result; the state
        dict no longer has the checkpoint layout.
        """
        if self.deployed:
            return self
        relu = isinstance(self.stem.act_norm.act, nn.ReLU)
        _deploy_layer(self.stem, relu)
        for block in self.blocks:
            block.drop_path = nn.Identity()
            shift = _deploy_layer(block.token_mixer, relu, keep_shift=False)
            conv = block.channel_mixer.conv
            conv.bias.add_(conv.weight.flatten(1) @ shift)
            _deploy_layer(block.channel_mixer, relu)
        self.deployed = True
        return self

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert a ConvMixer state dict to this package's layout.

        Layouts, detected from the keys:

        - ``mixer_backbones``: ``stem.conv``, ``blocks.{k}.token_mixer``
          and ``blocks.{k}.channel_mixer`` (each ``conv`` and
          ``act_norm.norm``); returned unchanged.
        - ``timm`` (also Hugging Face ``timm/convmixer_*``): ``stem.{0,2}``,
          ``blocks.{k}.{0.fn.0, 0.fn.2, 1, 3}``, ``head``.
        - ``mmpretrain``: ``backbone.stem.{0,2}``,
          ``backbone.stages.{k}.{0.fn.0, 0.fn.2, 1, 3}``, ``head.fc``
          (also without the ``backbone.`` prefix).
        - ``locuslab`` (the original release, one ``nn.Sequential``):
          ``0`` patch conv, ``2`` BN, block k at ``3+k``, the classifier at
          ``depth+5``.

        Classifier weights land under ``head.`` (ignored on loading).
        """
        if 'stem.conv.weight' in state_dict:
            return dict(state_dict), 'mixer_backbones'
        if 'backbone.stem.0.weight' in state_dict:
            stripped = {}
            for key, value in state_dict.items():
                if key.startswith('backbone.'):
                    stripped[key[len('backbone.'):]] = value
                else:
                    stripped[key] = value
            converted, _ = cls.convert_checkpoint(stripped)
            return converted, 'mmpretrain'
        if 'stem.0.weight' in state_dict and 'stages.0.1.weight' in (
                state_dict):
            return _convert_sequential(state_dict, 'stages.'), 'mmpretrain'
        if 'stem.0.weight' in state_dict:
            return _convert_sequential(state_dict, 'blocks.'), 'timm'
        if '0.weight' in state_dict and '3.0.fn.0.weight' in state_dict:
            return _convert_locuslab(state_dict), 'locuslab'
        raise CheckpointError(
            'not a ConvMixer checkpoint in a known layout (mixer_backbones: '
            "'stem.conv.weight'; timm / Hugging Face: 'stem.0.weight', "
            "'blocks.0.0.fn.0.weight'; mmpretrain: 'backbone.stem.0.weight',"
            " 'backbone.stages.0.0.fn.0.weight'; locuslab: '0.weight', "
            f"'3.0.fn.0.weight'); first keys: {list(state_dict)[:5]}")


def _deploy_layer(layer: ConvActivationNorm,
                  relu: bool,
                  keep_shift: bool = True) -> torch.Tensor:
    """Replace ``layer``'s BatchNorm by a :class:`ChannelAffine` (moving
    ``|scale|`` into the conv for ReLU); return the shift, which is left
    out of the affine unless ``keep_shift``."""
    norm = layer.act_norm.norm
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    if relu:
        magnitude = scale.abs()
        conv = layer.conv
        conv.weight.mul_(magnitude.view(-1, 1, 1, 1))
        if conv.bias is not None:
            conv.bias.mul_(magnitude)
        scale = torch.sign(scale)
        if bool((scale == 1).all()):
            scale = None
    layer.act_norm.norm = ChannelAffine(scale,
                                        shift.clone() if keep_shift else None)
    return shift


_SEQUENTIAL_PARTS = {
    '0.fn.0.': 'token_mixer.conv.',
    '0.fn.2.': 'token_mixer.act_norm.norm.',
    '1.': 'channel_mixer.conv.',
    '3.': 'channel_mixer.act_norm.norm.',
}
_STEM_PARTS = {'0.': 'conv.', '2.': 'act_norm.norm.'}


def _block_key(index: int, rest: str) -> Optional[str]:
    for old, new in _SEQUENTIAL_PARTS.items():
        if rest.startswith(old):
            return f'blocks.{index}.{new}{rest[len(old):]}'
    return None


def _convert_sequential(state_dict: StateDict, blocks: str) -> StateDict:
    """timm (``blocks.``) and mmpretrain (``stages.``) names."""
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        block = re.match(re.escape(blocks) + r'(\d+)\.(.*)', key)
        if key.startswith('stem.'):
            rest = key[len('stem.'):]
            for old, part in _STEM_PARTS.items():
                if rest.startswith(old):
                    new = 'stem.' + part + rest[len(old):]
        elif block:
            new = _block_key(int(block.group(1)), block.group(2)) or key
        converted[new] = value
    return converted


def _convert_locuslab(state_dict: StateDict) -> StateDict:
    indices = {
        int(m.group(1))
        for m in (re.match(r'(\d+)\.0\.fn\.', k) for k in state_dict) if m
    }
    depth = len(indices)
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        match = re.match(r'(\d+)\.(.*)', key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            if index in (0, 2):
                new = 'stem.' + _STEM_PARTS[f'{index}.'] + rest
            elif index in indices:
                new = _block_key(index - 3, rest) or key
            elif index == depth + 5:
                new = 'head.' + rest
        converted[new] = value
    return converted
