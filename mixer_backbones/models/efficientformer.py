"""EfficientFormer as a dense backbone that runs at any input size."""
import re
from collections import OrderedDict
from typing import AbstractSet, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import MeanTokens, StateDict, collect_renamed
from .layers import (ConvMlp, DropPath, LayerNorm, LayerScale, PoolingMixer,
                     add_residual, build_activation, build_norm,
                     fold_batchnorm)
from .metaformer import (MetaFormerBackbone, MetaFormerBlock, MetaFormerStage,
                         drop_path_rates)
from .validation import check_arguments

BIAS_MODES = ('bicubic', 'bilinear', 'clamp', 'dense')
# The 'dense' table of the original dense models: a 25x25 offset grid in
# the detection release, 16x16 in the segmentation release.
DENSE_TABLE_KEY = 'dense_attention_biases'


def _is_exporting() -> bool:
    """True while tracing, scripting, compiling or exporting to ONNX:
    then nothing is cached outside the graph."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and compiler.is_compiling():
        return True
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export())


def offset_index(height: int,
                 width: int,
                 query_stride: int = 1,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """The ``[Nq, N]`` index of each (query, key) pair's offset into a
    row-major ``[H, W]`` grid of offsets ``(|dy|, |dx|)``, for keys on an
    HxW grid and queries on every ``query_stride``-th point of it
    (``ceil(H / s) x ceil(W / s)`` queries; ``dy = s * qy - ky``), tokens
    in row-major order."""
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    dy = (rows[::query_stride, None] - rows[None, :]).abs()
    dx = (cols[::query_stride, None] - cols[None, :]).abs()
    index = dy[:, None, :, None] * width + dx[None, :, None, :]
    return index.reshape(dy.shape[0] * dx.shape[0], height * width)


def resample_offset_table(table: torch.Tensor, height: int, width: int,
                          mode: str) -> torch.Tensor:
    """Carry a ``[heads, R, R]`` table over offsets ``(|dy|, |dx|)`` to
    ``[heads, H, W]``: unchanged for an RxR grid; otherwise ``'bicubic'`` or
    ``'bilinear'`` resampling with ``align_corners=True`` (offset 0 stays
    offset 0, the largest table offset maps to the largest offset of the
    grid), or ``'clamp'`` (offsets beyond the table take the value of its
    last row/column)."""
    size = table.shape[-1]
    if (height, width) == (size, size):
        return table
    if mode == 'clamp':
        rows = torch.arange(height, device=table.device).clamp(max=size - 1)
        cols = torch.arange(width, device=table.device).clamp(max=size - 1)
        return table[:, rows][:, :, cols]
    resized = F.interpolate(
        table.unsqueeze(0).float(),
        size=(height, width),
        mode=mode,
        align_corners=True)
    return resized.squeeze(0).to(table.dtype)


class RelativeBiasTable(nn.Module):
    """Base of the attention modules with a learned bias per head and per
    offset ``(|dy|, |dx|)``: the table, its modes at other grid sizes, the
    switch to the original dense models' table and a cache of the bias.

    The table ``attention_biases`` has ``resolution ** 2`` entries per head,
    offset ``(|dy|, |dx|)`` at column ``|dy| * resolution + |dx|`` (the
    layout of the published checkpoints). In ``'dense'`` mode it is
    ``dense_attention_biases`` instead (see :meth:`switch_to_dense`); a
    module loading a state dict that holds ``dense_attention_biases``
    switches to ``'dense'`` by itself. A subclass calls
    :meth:`init_bias_table` and implements :meth:`relative_bias` for its
    grid, which :meth:`cached_relative_bias` caches per grid size in eval
    mode without autograd, outside tracing, compiling and export.
    """

    cache_size = 8

    def init_bias_table(self, num_heads: int, resolution: int,
                        bias_mode: str) -> None:
        if bias_mode not in BIAS_MODES:
            raise ValueError(f'unknown bias_mode {bias_mode!r}; valid: '
                             f'{BIAS_MODES}')
        self.num_heads = num_heads
        self.resolution = resolution
        self.bias_mode = bias_mode
        table = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        if bias_mode == 'dense':
            self.register_parameter(DENSE_TABLE_KEY, table)
        else:
            self.attention_biases = table
        self._bias_cache: Dict[tuple, torch.Tensor] = {}

    @property
    def bias_table(self) -> nn.Parameter:
        """The learned table: ``dense_attention_biases`` in ``'dense'``
        mode, ``attention_biases`` otherwise."""
        if self.bias_mode == 'dense':
            return getattr(self, DENSE_TABLE_KEY)
        return self.attention_biases

    def switch_to_dense(self, resolution: int) -> None:
        """Turn into ``'dense'`` mode with a zero table of ``resolution **
        2`` offsets, in place: the same parameter object, renamed
        ``dense_attention_biases`` and resized, so an optimizer built before
        still holds it. The pretrained table is not used by the
        original dense models and is not kept."""
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f'dense bias resolution must be a positive int, '
                             f'got {resolution!r}')
        if self.bias_mode == 'dense' and self.resolution == resolution:
            return
        if (torch.distributed.is_available()
                and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1):
            raise RuntimeError(
                'a checkpoint with dense attention biases '
                f'({resolution}x{resolution} offsets) was loaded into a '
                f'model built with bias_mode={self.bias_mode!r} in a '
                'distributed run, where parameters cannot change shape '
                'after wrapping; build the backbone with '
                f"bias_mode='dense', bias_resolution={resolution}")
        self.reset_bias_table('dense', resolution)

    def reset_bias_table(self, mode: str, resolution: int) -> None:
        """Set the mode and a zero table of ``resolution ** 2`` offsets,
        keeping the parameter object (what :meth:`switch_to_dense` and
        its undo do)."""
        table = self.bias_table
        name = DENSE_TABLE_KEY if self.bias_mode == 'dense' else (
            'attention_biases')
        del self._parameters[name]
        with torch.no_grad():
            table.data = table.new_zeros(self.num_heads,
                                         resolution * resolution)
        name = DENSE_TABLE_KEY if mode == 'dense' else 'attention_biases'
        self._parameters[name] = table
        self.bias_mode, self.resolution = mode, resolution
        self._bias_cache.clear()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        dense = state_dict.get(prefix + DENSE_TABLE_KEY)
        if dense is not None and (self.bias_mode != 'dense' or
                                  dense.shape != self.bias_table.shape):
            self.switch_to_dense(_dense_resolution(dense, prefix))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def offset_table(self) -> torch.Tensor:
        """The table as a ``[heads, R, R]`` image over the offsets."""
        size = self.resolution
        return self.bias_table.view(self.num_heads, size, size)

    def relative_bias(self, height: int, width: int) -> torch.Tensor:
        """The ``[heads, Nq, N]`` bias of the attention logits on a grid
        of ``height x width`` (a subclass's grid)."""
        raise NotImplementedError

    def cached_relative_bias(self, height: int, width: int,
                             dtype: torch.dtype) -> torch.Tensor:
        """:meth:`relative_bias` in ``dtype``, cached per grid size when
        nothing needs a graph (eval mode, no autograd, no export)."""
        if (self.training or torch.is_grad_enabled() or _is_exporting()):
            return self.relative_bias(height, width).to(dtype)
        table = self.bias_table
        key = (height, width, table.device, dtype, table._version,
               self.bias_mode, self.resolution,
               torch.is_inference_mode_enabled())
        bias = self._bias_cache.get(key)
        if bias is None:
            if len(self._bias_cache) >= self.cache_size:
                self._bias_cache.clear()
            bias = self.relative_bias(height, width).to(dtype)
            self._bias_cache[key] = bias
        return bias


def dense_pair_bias(table: torch.Tensor, num_queries: int, num_keys: int,
                    query_stride: int = 1) -> torch.Tensor:
    """The bias of the original dense models: a ``[heads, R, R]`` offset
    table expanded to the pair matrix of its RxR key grid (queries on every
    ``query_stride``-th point, see :func:`offset_index`), then resized as
    an image, bicubically (corners not aligned), to ``[heads, Nq, N]``. It
    depends on the token counts only, not on the grid's shape, exactly as
    in the original."""
    size = table.shape[-1]
    index = offset_index(size, size, query_stride, table.device)
    pair = table.flatten(1)[:, index].unsqueeze(0)
    resized = F.interpolate(
        pair.float(), size=(num_queries, num_keys), mode='bicubic')
    return resized.squeeze(0).to(table.dtype)


class RelativeBiasAttention(RelativeBiasTable):
    """Multi-head self-attention over an HxW token grid with a learned
    bias per head and per offset ``(|dy|, |dx|)``.

    The bias table (see :class:`RelativeBiasTable`) is viewed as a
    ``[heads, resolution, resolution]`` image over ``(|dy|, |dx|)`` and
    resampled to ``[heads, H, W]`` on an HxW grid (see ``bias_mode`` and
    :func:`resample_offset_table`); on a grid of exactly ``resolution x
    resolution`` it is used as is, so 224x224 inputs give the pretrained
    model's values exactly. The ``[heads, N, N]`` bias is gathered from
    that per forward (cheap next to the attention itself) and cached per
    grid size only in eval mode without autograd, outside tracing,
    compiling and export.

    Args:
        channels (int): Token channels.
        num_heads (int): Attention heads. Defaults to 8.
        key_dim (int): Channels of each head's queries and keys.
            Defaults to 32.
        attn_ratio (float): Value channels per head over ``key_dim``.
            Defaults to 4.
        resolution (int): Side of the grid the bias table is defined on.
            Defaults to 7.
        bias_mode (str): How the table is carried to other grid sizes:
            ``'bicubic'`` or ``'bilinear'`` resampling with
            ``align_corners=True`` (offset 0 stays offset 0, the largest
            pretrained offset maps to the largest offset of the grid), or
            ``'clamp'`` (offsets beyond the table take the value of its last
            row/column; smaller grids use the table's first entries), or
            ``'dense'``: the original dense models' computation (see
            :func:`dense_pair_bias`) on a table ``dense_attention_biases``
            of ``resolution ** 2`` offsets that replaces
            ``attention_biases``. A module loading a state dict that holds
            ``dense_attention_biases`` switches to ``'dense'`` by itself
            (see :meth:`switch_to_dense`). Defaults to ``'bicubic'``.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 key_dim: int = 32,
                 attn_ratio: float = 4.,
                 resolution: int = 7,
                 bias_mode: str = 'bicubic') -> None:
        super().__init__()
        self.key_dim = key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.qkv = nn.Linear(channels,
                             num_heads * (2 * key_dim + self.value_dim))
        self.proj = nn.Linear(num_heads * self.value_dim, channels)
        self.init_bias_table(num_heads, resolution, bias_mode)

    def dense_relative_bias(self, num_tokens: int) -> torch.Tensor:
        """The bias of the original dense models for ``num_tokens``
        tokens (see :func:`dense_pair_bias`)."""
        return dense_pair_bias(self.offset_table(), num_tokens, num_tokens)

    def offset_bias(self, height: int, width: int) -> torch.Tensor:
        """The bias of each offset on an HxW grid: ``[heads, H, W]``
        indexed by ``(|dy|, |dx|)``."""
        return resample_offset_table(
            self.attention_biases.view(self.num_heads, self.resolution,
                                       self.resolution), height, width,
            self.bias_mode)

    def relative_bias(self, height: int, width: int) -> torch.Tensor:
        """The ``[heads, H*W, H*W]`` bias added to the attention logits of
        an HxW grid (tokens in row-major order)."""
        if self.bias_mode == 'dense':
            return self.dense_relative_bias(height * width)
        grid = self.offset_bias(height, width).flatten(1)
        return grid[:, offset_index(height, width, device=grid.device)]

    def forward(self, x: torch.Tensor, height: int,
                width: int) -> torch.Tensor:
        """Attend over tokens ``x`` of shape (B, H*W, C)."""
        batch, num_tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, self.num_heads,
                                  -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim],
                            dim=-1)
        bias = self.cached_relative_bias(height, width, q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, scale=self.scale)
        out = out.transpose(1, 2).reshape(batch, num_tokens, -1)
        return self.proj(out)

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, key_dim={self.key_dim}, '
                f'value_dim={self.value_dim}, resolution={self.resolution}, '
                f'bias_mode={self.bias_mode!r}')


def _dense_resolution(table: torch.Tensor, name: str) -> int:
    """R of a dense ``[heads, R * R]`` bias table, refusing other shapes."""
    side = int(round(table.shape[-1]**0.5)) if table.dim() == 2 else 0
    if side < 1 or side * side != table.shape[-1]:
        raise CheckpointError(
            f'{name}{DENSE_TABLE_KEY}: shape {tuple(table.shape)} is not a '
            f'[heads, R * R] table of a square offset grid')
    return side


class TokenMlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` on (B, N, C) tokens, with linear
    layers."""

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 act: str = 'gelu',
                 drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden_channels)
        self.act = build_activation(act)
        self.drop1 = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2 = nn.Linear(hidden_channels, in_channels)
        self.drop2 = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Meta3DBlock(nn.Module):
    """A transformer block on the flattened grid: ``x + ls1 *
    attention(LN(x))``, then ``x + ls2 * MLP(LN(x))``.

    Takes and returns NCHW maps (the grid size is what the attention bias
    needs); flattening and restoring are views, not copies.
    """

    def __init__(self,
                 channels: int,
                 mlp_ratio: float = 4.,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-5,
                 attention: Optional[dict] = None) -> None:
        super().__init__()
        self.norm1 = LayerNorm(channels)
        self.token_mixer = RelativeBiasAttention(channels, **(attention or {}))
        self.layer_scale1 = LayerScale(
            channels, layer_scale_init_value, channel_dim=-1)
        self.norm2 = LayerNorm(channels)
        self.mlp = TokenMlp(channels, int(channels * mlp_ratio))
        self.layer_scale2 = LayerScale(
            channels, layer_scale_init_value, channel_dim=-1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = add_residual(
            tokens,
            self.drop_path(
                self.layer_scale1(
                    self.token_mixer(self.norm1(tokens), height, width))))
        tokens = add_residual(
            tokens,
            self.drop_path(self.layer_scale2(self.mlp(self.norm2(tokens)))))
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def _conv_bn(in_channels: int, out_channels: int, norm_cfg: dict,
             suffix: str = '') -> list:
    return [
        (f'conv{suffix}',
         nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)),
        (f'norm{suffix}', build_norm(norm_cfg, out_channels)),
    ]


class DenseBiasLoading:
    """What loading does for a backbone whose attention modules are
    :class:`RelativeBiasTable`: a checkpoint carrying an attention's
    ``dense_attention_biases`` (a released dense model) switches it to
    ``'dense'`` mode with that table's size; a dense table missing from a
    checkpoint starts from zero; the unused ImageNet table a released dense
    model keeps beside it is ignored. Mixed in before the backbone's base
    class."""

    unused_table_reason = ('the ImageNet bias table, which the original '
                           'dense models keep but never use')

    def _attentions(self) -> Dict[str, RelativeBiasTable]:
        return {
            name + '.': module
            for name, module in self.named_modules()
            if isinstance(module, RelativeBiasTable)
        }

    def adapt_to_checkpoint(self, state_dict: StateDict):
        """Switch every attention whose ``dense_attention_biases`` the
        checkpoint carries to ``'dense'`` mode with that table's size (see
        :meth:`RelativeBiasTable.switch_to_dense`); returns the undo."""
        switched = []
        for prefix, attention in self._attentions().items():
            table = state_dict.get(prefix + DENSE_TABLE_KEY)
            if table is None:
                continue
            resolution = _dense_resolution(table, prefix)
            if (attention.bias_mode, attention.resolution) != ('dense',
                                                               resolution):
                switched.append((attention, attention.bias_mode,
                                 attention.resolution))
                attention.switch_to_dense(resolution)

        def undo() -> None:
            for attention, mode, resolution in switched:
                attention.reset_bias_table(mode, resolution)

        return undo

    def is_new_key(self, key: str) -> bool:
        # A dense table missing from an ImageNet checkpoint starts from
        # zero, as in the original dense recipe.
        return super().is_new_key(key) or key.endswith('.' + DENSE_TABLE_KEY)

    def unused_key_reason(self, key: str) -> Optional[str]:
        prefix, _, name = key.rpartition('.')
        attention = self._attentions().get(prefix + '.')
        if (name == 'attention_biases' and attention is not None
                and attention.bias_mode == 'dense'):
            return self.unused_table_reason
        return super().unused_key_reason(key)


@MODELS.register_module()
class EfficientFormer(DenseBiasLoading, MetaFormerBackbone):
    """EfficientFormer backbone with a 4/8/16/32 feature pyramid, at any
    input size.

    From `EfficientFormer: Vision Transformers at MobileNet Speed
    <https://arxiv.org/abs/2206.01191>`_: a stem of two stride-2
    conv-BN-ReLU, four stages of pooling-mixer blocks with a conv-BN MLP
    ("Meta4D": :class:`~.metaformer.MetaFormerBlock` without norms), a
    stride-2 conv-BN between stages, and ``vit_num``
    transformer blocks ("Meta3D") at the end of the last stage. Every level
    is returned as NCHW, and each requested level gets a new
    GroupNorm(1, C), as in the paper's dense models.

    Any input size: the attention's relative-position bias is learned on
    the 7x7 grid of a 224x224 input. On another HxW grid (25x38 for
    800x1216, 16x16 for 512x512, 1x2 for a 32x64 input) the pretrained
    table, viewed as a ``[heads, 7, 7]`` image over the offsets
    ``(|dy|, |dx|)``, is resampled bicubically with ``align_corners=True``
    to ``[heads, H, W]``: offset 0 keeps its value, the largest pretrained
    offset maps to the largest offset of the grid, and the bias varies
    smoothly in between, which is how relative-position tables are carried
    to a new resolution for fine-tuning (Swin, BEiT) and keeps what the
    table learned instead of re-initialising it as the original dense code
    does. ``bias_mode='clamp'`` instead keeps the bias of each offset in
    pixels (offsets beyond 6 take the value of offset 6). On the 7x7 grid
    the table is used as is, so at 224x224 the outputs equal the
    classification model's.

    Weights load from the snap-research release, timm / Hugging Face files,
    mmpretrain files and this package's layout (see
    :meth:`convert_checkpoint`) through ``init_cfg=dict(type='Pretrained',
    checkpoint=PATH_OR_URL)``. :meth:`switch_to_deploy` folds every
    BatchNorm into its conv for inference.

    Args:
        arch (str | dict): ``'l1'``, ``'l3'``, ``'l7'`` or a dict with keys
            ``depths``, ``widths``, ``vit_num`` and optionally
            ``layer_scale_init_value``, ``num_heads``, ``key_dim`` and
            ``attn_ratio``. Defaults to ``'l1'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages (0-3, negative allowed)
            whose outputs are returned, at strides 4, 8, 16 and 32 (sizes
            rounded up). Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 with their output norms. Defaults to -1.
        norm_eval (bool): Put the BatchNorm layers (stem, downsamples and
            the Meta4D MLPs; not the LayerNorms of the Meta3D blocks nor the
            output GroupNorms) in eval mode in ``train()``.
            Defaults to False.
        with_cp (bool): Checkpoint every block to save memory.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks up to this rate. Defaults to 0.
        norm_cfg (dict): The BatchNorms of the stem, the downsamples and
            the Meta4D MLPs (e.g. ``dict(type='SyncBN')``). Defaults to
            ``dict(type='BN')``.
        act_cfg (dict): Activation of the Meta4D MLPs (the stem keeps its
            ReLUs). Defaults to ``dict(type='GELU')``.
        layer_scale_init_value (float, optional): Overrides the arch's
            initial layer scale (1e-5 for L1/L3, 1e-6 for L7).
            Defaults to None (the arch's value).
        pool_size (int): Pooling window of the Meta4D blocks.
            Defaults to 3.
        mlp_ratio (float): MLP hidden width over the block width.
            Defaults to 4.
        bias_mode (str): How the 7x7 attention bias table is carried to
            other grid sizes: ``'bicubic'``, ``'bilinear'`` or ``'clamp'``
            (see :class:`RelativeBiasAttention`), or ``'dense'``: the
            original dense models' own table of ``bias_resolution ** 2``
            offsets and their pair-matrix resize. Loading a checkpoint
            that carries dense tables (the released Mask R-CNN and
            Semantic FPN models) switches to ``'dense'`` by itself; set it
            here to train from such a checkpoint under DDP, or to train
            the original dense recipe's zero-initialised table. Defaults
            to ``'bicubic'``.
        bias_resolution (int, optional): Side of the offset grid of the
            bias table: 7 (the ImageNet table) by default; with
            ``bias_mode='dense'`` 25 as in the detection release or 16 as
            in the segmentation release (required). Defaults to None.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.

    Example:
        >>> import torch
        >>> from mixer_backbones import EfficientFormer
        >>> model = EfficientFormer('l1').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 48, 200, 304)
        (1, 96, 100, 152)
        (1, 224, 50, 76)
        (1, 448, 25, 38)
    """
    arch_zoo = {
        'l1': dict(depths=[3, 2, 6, 4], widths=[48, 96, 224, 448],
                   vit_num=1, layer_scale_init_value=1e-5),
        'l3': dict(depths=[4, 4, 12, 6], widths=[64, 128, 320, 512],
                   vit_num=4, layer_scale_init_value=1e-5),
        'l7': dict(depths=[6, 6, 18, 8], widths=[96, 192, 384, 768],
                   vit_num=8, layer_scale_init_value=1e-6),
    }  # yapf: disable
    arch_keys = ('depths', 'widths', 'vit_num')
    arch_optional_keys = ('layer_scale_init_value', 'num_heads', 'key_dim',
                          'attn_ratio')
    family_name = 'efficientformer'
    published = {
        'l1': dict(params=12.3, gmacs=1.3),
        'l3': dict(params=31.4, gmacs=3.9),
        'l7': dict(params=82.2, gmacs=10.2),
    }
    timm_names = {arch: f'efficientformer_{arch}' for arch in arch_zoo}
    mmpretrain = dict(
        type='EfficientFormer', stem='patch_embed', units='network')
    cpu_memory_format = torch.channels_last
    tiny_arch = dict(depths=[1, 1, 1, 2], widths=[8, 16, 24, 32], vit_num=1)
    classifier_prefixes = ('head.', 'head_dist.', 'norm.')
    unused_table_reason = ('the ImageNet 7x7 bias table, which the original '
                           'dense models keep but never use')

    def __init__(self,
                 arch: Union[str, dict] = 'l1',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 layer_scale_init_value: Optional[float] = None,
                 pool_size: int = 3,
                 mlp_ratio: float = 4.,
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
            layer_scale_init_value=layer_scale_init_value,
            pool_size=pool_size,
            mlp_ratio=mlp_ratio)
        settings = self.init_arch(arch)
        depths, widths = settings['depths'], settings['widths']
        vit_num = settings['vit_num']
        if len(depths) != len(widths):
            raise ValueError(f'EfficientFormer arch: depths {depths} and '
                             f'widths {widths} differ in length')
        if not 0 <= vit_num <= depths[-1]:
            raise ValueError(f'EfficientFormer arch: vit_num={vit_num} must '
                             f'be between 0 and the last depth {depths[-1]}')
        if bias_mode not in BIAS_MODES:
            raise ValueError(f'EfficientFormer: unknown bias_mode '
                             f'{bias_mode!r}; valid: {BIAS_MODES}')
        if bias_mode == 'dense' and bias_resolution is None:
            raise ValueError(
                "EfficientFormer: bias_mode='dense' needs bias_resolution "
                '(25 for the detection release, 16 for the segmentation '
                'release)')
        if layer_scale_init_value is None:
            layer_scale_init_value = settings.get('layer_scale_init_value',
                                                  1e-5)
        attention = dict(
            resolution=bias_resolution or 7,
            num_heads=settings.get('num_heads', 8),
            key_dim=settings.get('key_dim', 32),
            attn_ratio=settings.get('attn_ratio', 4),
            bias_mode=bias_mode)
        self.vit_num = vit_num
        self.bias_mode = bias_mode

        stem_channels = widths[0] // 2
        self.stem = nn.Sequential(
            OrderedDict(
                _conv_bn(in_channels, stem_channels, norm_cfg, '1') +
                [('act1', nn.ReLU())] +
                _conv_bn(stem_channels, widths[0], norm_cfg, '2') +
                [('act2', nn.ReLU())]))
        self.stages = nn.ModuleList()
        rates = drop_path_rates(depths, drop_path_rate)
        last = len(depths) - 1
        for i, (depth, width) in enumerate(zip(depths, widths)):
            downsample = None if i == 0 else nn.Sequential(
                OrderedDict(_conv_bn(widths[i - 1], width, norm_cfg)))
            num_3d = vit_num if i == last else 0
            blocks = []
            for j, rate in enumerate(rates[i]):
                if j >= depth - num_3d:
                    blocks.append(
                        Meta3DBlock(width, mlp_ratio, rate,
                                    layer_scale_init_value, attention))
                else:
                    blocks.append(
                        MetaFormerBlock(
                            width,
                            token_mixer=PoolingMixer(pool_size),
                            mlp=ConvMlp(width, int(width * mlp_ratio),
                                        act_cfg, norm_cfg),
                            layer_scale_init_value=layer_scale_init_value,
                            drop_path=rate))
            self.stages.append(MetaFormerStage(downsample, blocks))
        self.setup_outputs(widths)

    def forward_unit(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # After Meta3D blocks the map is a channels-last view of the
        # tokens; hand the necks a standard contiguous NCHW tensor.
        return super().forward_unit(index, x).contiguous()

    @classmethod
    def classifier_head(cls, channels: int,
                        num_classes: int = 1000) -> nn.Module:
        """LayerNorm over the last stage's tokens, global average, and the
        average of the classification and distillation heads."""
        return nn.Sequential(
            _TokenLayerNorm(channels), MeanTokens(),
            _DistilledHeads(channels, num_classes))

    def min_single_image_training_size(self) -> int:
        # Five stride-2 convs (3x3, padding 1): the last map is
        # ceil(n / 32) wide, 1 up to n = 32.
        return 33

    # ---------------------------------------------------------- deploy --
    @torch.no_grad()
    def switch_to_deploy(self) -> 'EfficientFormer':
        """Fold every BatchNorm (stem, downsamples, Meta4D MLPs) into the
        conv before it, in place, using its running statistics, and the
        Meta4D blocks' second layer scale into their MLP. The model has no
        BatchNorm left and gives the same outputs in eval mode; the form is
        for inference (on the CPU, see
        :func:`mixer_backbones.ops.cpu.optimize`). Returns the model."""
        if self.deployed:
            return self
        pairs = [(self.stem, 'conv1', 'norm1'), (self.stem, 'conv2', 'norm2')]
        pairs += [(stage.downsample, 'conv', 'norm') for stage in self.stages
                  if isinstance(stage.downsample, nn.Sequential)]
        for parent, conv_name, norm_name in pairs:
            norm = getattr(parent, norm_name)
            if isinstance(norm, _BatchNorm):
                setattr(parent, conv_name,
                        fold_batchnorm(getattr(parent, conv_name), norm))
                setattr(parent, norm_name, nn.Identity())
        return super().switch_to_deploy()

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert an EfficientFormer state dict to this package's layout.

        Layouts, detected from the keys:

        - ``mixer_backbones``: ``stem.conv1``, ``stages.{s}.blocks.{j}``
          with ``layer_scale{1,2}.weight``; returned unchanged.
        - ``timm`` (also the Hugging Face hub files): ``stem.{conv1,norm1,
          conv2,norm2}``, ``stages.{s}.downsample.{conv,norm}``,
          ``stages.{s}.blocks.{j}`` with ``ls{1,2}.gamma`` and a
          parameter-free flatten entry before the Meta3D blocks, ``norm``,
          ``head``, ``head_dist``.
        - ``snap-research`` (the original release): ``patch_embed.{0,1,3,
          4}``, blocks ``network.{0,2,4,6}.{j}``, downsamples
          ``network.{1,3,5}.{proj,norm}``, ``layer_scale_{1,2}``, ``norm``,
          ``head``, ``dist_head``; per-level ``norm{0,2,4,6}`` of the
          original dense models (any of them) become output norms, and
          their trained ``attention_biases_seg`` tables become
          ``dense_attention_biases`` (the model then runs in ``'dense'``
          bias mode); the ImageNet ``attention_biases`` they keep unused
          stays, and is ignored on loading.
        - ``mmpretrain`` (``backbone.`` prefix removed): ``patch_embed.{0,
          1}.{conv,bn}``, stage ``network.{s}`` holding its downsample
          ``network.{s}.0.{conv,bn}`` before its blocks, ``ls{1,2}.weight``,
          the classifier's final LayerNorm as ``norm3`` (per-level
          ``norm{0..3}`` of a dense model become output norms).

        Block indices are renumbered densely (the flatten entry and
        mmpretrain's downsample take none), layer scales become [C] and the
        ``attention_bias_idxs`` and ``attention_bias_idxs_seg`` buffers
        are dropped after a check of their shape (the indices are derived
        from the table sizes). The final norm and the heads map to
        ``norm.``, ``head.`` and ``head_dist.``, ignored on loading. Keys
        of no known name pass unchanged (and are refused on loading); two
        keys converting to one name raise :class:`CheckpointError`.
        """
        keys = list(state_dict)
        if any(re.search(r'\.mlp\.mid\.(conv\.)?weight$', k) for k in keys):
            raise CheckpointError(
                'an EfficientFormerV2 checkpoint (depthwise convolutions '
                "'.mlp.mid' in its FFNs), not an EfficientFormer one: load "
                'it with EfficientFormerV2')
        if 'stem.conv1.weight' in state_dict:
            if any(
                    k.endswith(('.ls1.gamma', 'attention_bias_idxs'))
                    for k in keys):
                return _convert(state_dict, _rename_timm), 'timm'
            return dict(state_dict), 'mixer_backbones'
        if 'patch_embed.0.weight' in state_dict:
            return _convert(state_dict, _rename_snap), 'snap-research'
        if 'patch_embed.0.conv.weight' in state_dict:
            return _convert(state_dict, _rename_mmpretrain), 'mmpretrain'
        raise CheckpointError(
            'not an EfficientFormer checkpoint in a known layout '
            "(mixer_backbones or timm: 'stem.conv1.weight'; snap-research: "
            "'patch_embed.0.weight'; mmpretrain: "
            "'patch_embed.0.conv.weight' under 'backbone.'); first keys: "
            f'{keys[:5]}')


class _TokenLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map, as tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(2).transpose(1, 2))


class _DistilledHeads(nn.Module):
    """The classification and distillation heads, averaged."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(channels, num_classes)
        self.dist_head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.head(x) + self.dist_head(x)) / 2


# ------------------------------------------------------------ converters --
_BLOCK = re.compile(r'stages\.(\d+)\.blocks\.(\d+)\.(.*)')
_LAYER_SCALE = re.compile(r'(?:layer_scale_|ls)([12])(?:\.gamma|\.weight)?$')


def _rename_timm(key: str, keys: AbstractSet[str]) -> Optional[str]:
    # timm's names are this package's but for the layer scales and the
    # block numbering, which _convert handles for every layout.
    return key


def _rename_snap(key: str, keys: AbstractSet[str]) -> Optional[str]:
    stem = {'0': 'conv1', '1': 'norm1', '3': 'conv2', '4': 'norm2'}
    match = re.match(r'patch_embed\.(\d+)\.(.*)', key)
    if match:
        return f'stem.{stem[match[1]]}.{match[2]}'
    match = re.match(r'network\.(\d+)\.(.*)', key)
    if match:
        position, rest = int(match[1]), match[2]
        if position % 2:  # downsample between stages
            rest = re.sub(r'^proj\.', 'conv.', rest)
            return f'stages.{position // 2 + 1}.downsample.{rest}'
        return f'stages.{position // 2}.blocks.{rest}'
    match = re.fullmatch(r'norm([0246])\.(.*)', key)
    if match:  # the original dense models (norm is the classifier's)
        return f'out_norms.{int(match[1]) // 2}.{match[2]}'
    if key.startswith('dist_head.'):
        return 'head_dist.' + key[len('dist_head.'):]
    return key


def _rename_mmpretrain(key: str, keys: AbstractSet[str]) -> Optional[str]:
    match = re.match(r'patch_embed\.([01])\.(conv|bn)\.(.*)', key)
    if match:
        layer = 'conv' if match[2] == 'conv' else 'norm'
        return f'stem.{layer}{int(match[1]) + 1}.{match[3]}'
    match = re.match(r'network\.(\d+)\.(\d+)\.(conv|bn)\.(.*)', key)
    if match:  # the downsample ConvModule at the head of a stage
        layer = 'conv' if match[3] == 'conv' else 'norm'
        return f'stages.{match[1]}.downsample.{layer}.{match[4]}'
    match = re.match(r'network\.(\d+)\.(.*)', key)
    if match:
        return f'stages.{match[1]}.blocks.{match[2]}'
    match = re.match(r'norm(\d+)\.(.*)', key)
    if match:
        if any(f'norm{i}.weight' in keys for i in range(3)):
            return f'out_norms.{match[1]}.{match[2]}'
        return 'norm.' + match[2]  # the classifier's final LayerNorm
    return key


def _convert(state_dict: StateDict, rename) -> StateDict:
    """Rename every key, then renumber each stage's blocks densely and
    convert the layer scales."""
    keys = set(state_dict)
    renamed: List[Tuple[str, str, torch.Tensor]] = []
    for key, value in state_dict.items():
        if key.endswith(('attention_bias_idxs', 'attention_bias_idxs_seg')):
            _check_bias_indices(key, value, state_dict)
            continue
        new = rename(key, keys)
        if new.endswith('.attention_biases_seg'):
            new = new[:-len('attention_biases_seg')] + DENSE_TABLE_KEY
        renamed.append((key, new, value))
    indices: Dict[str, set] = {}
    for _, key, _ in renamed:
        match = _BLOCK.match(key)
        if match:
            indices.setdefault(match[1], set()).add(int(match[2]))
    ranks = {
        stage: {
            raw: rank
            for rank, raw in enumerate(sorted(found))
        }
        for stage, found in indices.items()
    }
    renumbered = []
    for source, key, value in renamed:
        match = _BLOCK.match(key)
        if match:
            stage, rest = match[1], match[3]
            scale = _LAYER_SCALE.match(rest)
            if scale:
                rest, value = f'layer_scale{scale[1]}.weight', value.reshape(
                    -1)
            key = f'stages.{stage}.blocks.{ranks[stage][int(match[2])]}.{rest}'
        renumbered.append((source, key, value))
    return collect_renamed(renumbered, 'EfficientFormer')


def _check_bias_indices(key: str, value: torch.Tensor,
                        state_dict: StateDict) -> None:
    """The derived index buffers are dropped; refuse one whose shape does
    not fit its table (``[R*R, R*R]`` for a ``[heads, R*R]`` table)."""
    table = state_dict.get(key.replace('_bias_idxs', '_biases'))
    if table is None:
        raise CheckpointError(f'{key} has no bias table beside it')
    side = table.shape[-1]
    if tuple(value.shape) != (side, side):
        raise CheckpointError(
            f'{key}: shape {tuple(value.shape)} does not fit its table of '
            f'shape {tuple(table.shape)}')
