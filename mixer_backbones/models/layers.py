"""Building blocks shared by the model families.

PoolFormer and EfficientFormer share the pooling token mixer, the 1x1-conv
MLP and layer scale; every family shares stochastic depth.  Keeping them in
one place keeps the two MetaFormer families numerically identical where
their papers are.
"""
import weakref
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def build_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``'gelu'``, ``'relu'`` or
    ``'silu'`` (case-insensitive)."""
    table = {'gelu': nn.GELU, 'relu': nn.ReLU, 'silu': nn.SiLU}
    key = name.lower() if isinstance(name, str) else name
    if key not in table:
        raise ValueError(f'unknown activation {name!r}; valid: '
                         f'{sorted(table)}')
    return table[key]()


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample.

    Args:
        drop_prob (float): Probability of dropping the branch. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1. - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch`` in the dtype of the residual stream ``x``.

    Under autocast on GPUs, group and layer norms run in fp32, so a branch
    that starts with one ends in fp32 and a plain ``x + branch`` would
    promote the whole residual stream (and what later layers keep for
    backward) to fp32 from the first block on. Outside autocast both are
    the same dtype and this is the plain sum.
    """
    return x + branch.to(x.dtype)


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch.

    The scale is cast to the branch's dtype, so under autocast an fp32
    parameter does not promote a half-precision residual stream to fp32.

    Args:
        channels (int): Number of channels.
        init_value (float): Initial value of every scale.
        channel_dim (int): The channel dimension of the inputs, ``1`` for
            NCHW maps, ``-1`` for (B, N, C) tokens. Defaults to 1.
    """

    def __init__(self,
                 channels: int,
                 init_value: float,
                 channel_dim: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, ), init_value))
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype)
        if self.channel_dim == 1 and x.ndim == 4:
            weight = weight.view(-1, 1, 1)
        return x * weight


class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: normalises over (C, H, W) per sample.

    The result comes back in the input's dtype: under autocast on GPUs
    ``group_norm`` computes in fp32, and handing that on would make the
    pooling and layer scale after it keep fp32 tensors for backward.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__(1, num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose result comes back in the input's dtype (see
    :class:`GroupNorm1`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


class PoolingMixer(nn.Module):
    """The pooling token mixer of MetaFormer: ``avg_pool(x) - x``.

    The average excludes padding (``count_include_pad=False``), as in the
    papers; subtracting ``x`` makes the block's residual add the pooled
    value rather than the input twice.

    Args:
        pool_size (int): Pooling window. Defaults to 3.
    """

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool_size = pool_size

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The average alone."""
        return F.avg_pool2d(
            x,
            self.pool_size,
            stride=1,
            padding=self.pool_size // 2,
            count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x

    def extra_repr(self) -> str:
        return f'pool_size={self.pool_size}'


class ConvMlp(nn.Module):
    """Channel MLP on NCHW maps with 1x1 convolutions.

    ``fc1 -> [norm1] -> act -> drop -> fc2 -> [norm2] -> drop``; the norms
    (BatchNorm in EfficientFormer, none in PoolFormer) are present only
    when ``with_norm`` is set.  Modules are registered in forward order so
    that mmcv's ``fuse_conv_bn`` pairs each BatchNorm with its own conv.

    Args:
        in_channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
        act (str): Activation name. Defaults to ``'gelu'``.
        with_norm (bool): Follow each conv with BatchNorm. Defaults to False.
        drop (float): Dropout after the activation and at the end.
            Defaults to 0.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 act: str = 'gelu',
                 with_norm: bool = False,
                 drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.norm1 = (
            nn.BatchNorm2d(hidden_channels) if with_norm else nn.Identity())
        self.act = build_activation(act)
        self.drop1 = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2 = nn.Conv2d(hidden_channels, in_channels, 1)
        self.norm2 = (
            nn.BatchNorm2d(in_channels) if with_norm else nn.Identity())
        self.drop2 = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.norm1(self.fc1(x))))
        return self.drop2(self.norm2(self.fc2(x)))

    def fold_output_scale(self, scale: torch.Tensor) -> None:
        """Multiply the output by the per-channel ``scale`` (a layer scale)
        through ``fc2``'s weights; needs the norms folded already."""
        if not isinstance(self.norm2, nn.Identity):
            raise RuntimeError('fold the BatchNorms before the layer scale')
        with torch.no_grad():
            self.fc2.weight.mul_(scale.view(-1, 1, 1, 1))
            self.fc2.bias.mul_(scale)

    def forward_residual(self, x: torch.Tensor,
                         residual: torch.Tensor) -> torch.Tensor:
        """``residual + self(x)`` for an MLP without norms or dropout (the
        deploy form). On the CPU in fp32 without autograd, oneDNN runs
        fc1 with its GELU and fc2 with the residual addition as two fused
        convolutions, which saves two full passes over the widest tensor
        and the output; elsewhere it is the plain computation."""
        if _can_fuse(x, self):
            hidden = fused_conv_act(self.fc1, self.act, x)
            return _onednn_conv().binary(hidden, residual,
                                         _onednn_weight(self.fc2, hidden),
                                         self.fc2.bias, [0, 0], [1, 1],
                                         [1, 1], 1, 'add', None, None, [],
                                         None)
        return add_residual(residual, self(x))


def _onednn_conv():
    return torch.ops.mkldnn._convolution_pointwise


_HAVE_ONEDNN_FUSION = (torch.backends.mkldnn.is_available()
                       and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))

# conv -> ((weight version, weight address), weight in oneDNN's layout)
_PACKED_WEIGHTS: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()


def _onednn_weight(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv``'s weight for a fused oneDNN convolution of ``x``.

    For channels_last inputs, the weight reordered once into oneDNN's own
    layout and kept (outside the module: state dict, copies and devices
    are unaffected) until the weight changes, instead of being reordered
    on every call (5% of PoolFormer-S12's deploy + channels_last forward
    at 512x512 on this project's CPU). For NCHW inputs that measured
    slower, so the plain weight."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return conv.weight
    weight = conv.weight
    key = (weight._version, weight.data_ptr())
    entry = _PACKED_WEIGHTS.get(conv)
    if entry is None or entry[0] != key:
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.detach().to_mkldnn(), list(conv.padding),
            list(conv.stride), list(conv.dilation), conv.groups,
            list(x.shape))
        entry = _PACKED_WEIGHTS[conv] = (key, packed)
    return entry[1]


def _onednn_activation(act: nn.Module) -> Optional[Tuple[str, str]]:
    """oneDNN's name and algorithm for ``act``, or None if it has none
    that is exact."""
    if isinstance(act, nn.GELU) and act.approximate == 'none':
        return 'gelu', 'none'
    if isinstance(act, nn.ReLU):
        return 'relu', None
    return None


def _fusable_activation(conv: nn.Conv2d, act: nn.Module,
                        x: torch.Tensor) -> Optional[Tuple[str, str]]:
    """oneDNN's post-op for ``act`` after ``conv`` on ``x``, or None where
    the fused form does not apply: off the CPU, outside fp32, when
    autograd needs the graph, under torch.compile (the compiler fuses
    the traced plain form itself), or for padding oneDNN is not given."""
    if (not _HAVE_ONEDNN_FUSION or torch.compiler.is_compiling()
            or x.device.type != 'cpu' or x.dtype != torch.float32
            or conv.weight.dtype != torch.float32
            or isinstance(conv.padding, str)
            or conv.padding_mode != 'zeros'
            or (torch.is_grad_enabled() and
                (x.requires_grad or conv.weight.requires_grad))):
        return None
    return _onednn_activation(act)


def fused_conv_act(conv: nn.Conv2d, act: nn.Module,
                   x: torch.Tensor) -> Optional[torch.Tensor]:
    """``act(conv(x))`` as one oneDNN convolution with the activation as
    its post-op (exact GELU or ReLU), which saves a full pass over the
    output; None where that does not apply (see
    :func:`_fusable_activation`), for the caller to run the plain form."""
    activation = _fusable_activation(conv, act, x)
    if activation is None:
        return None
    name, algorithm = activation
    return _onednn_conv()(x, _onednn_weight(conv, x), conv.bias,
                          list(conv.padding), list(conv.stride),
                          list(conv.dilation), conv.groups, name, [],
                          algorithm)


def _can_fuse(x: torch.Tensor, mlp: ConvMlp) -> bool:
    return (isinstance(mlp.act, nn.GELU)
            and _fusable_activation(mlp.fc1, mlp.act, x) is not None
            and isinstance(mlp.norm1, nn.Identity)
            and isinstance(mlp.drop1, nn.Identity))


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise ``padding='same'`` stride-1 convolution whose CPU training
    backward (for odd kernels) is computed as two more depthwise
    convolutions, which oneDNN runs far faster than its own backward:

    - the input gradient is the output gradient convolved with the
      flipped kernel (same padding);
    - the weight gradient of channel ``c`` is the padded input of ``c``
      correlated with its output gradient, a depthwise convolution over
      the ``N * C`` (image, channel) maps with the gradient as kernel,
      summed over the images.

    Same parameters and state dict as ``nn.Conv2d``; the forward is the
    plain one. On GPUs, under autocast or torch.compile, without
    autograd and for even kernels (asymmetric padding) it is exactly
    ``nn.Conv2d``.

    Args:
        channels (int): Input and output channels.
        kernel_size (int): Kernel size.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(
            channels, channels, kernel_size, groups=channels, padding='same')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.kernel_size[0] % 2 == 1 and x.device.type == 'cpu'
                and x.dtype == torch.float32
                and torch.is_grad_enabled()
                and (x.requires_grad or self.weight.requires_grad)
                and not torch.is_autocast_enabled('cpu')
                and not torch.compiler.is_compiling()):
            return _DepthwiseConv.apply(x, self.weight, self.bias,
                                        self.kernel_size[0] // 2)
        return super().forward(x)


class _DepthwiseConv(torch.autograd.Function):
    """See :class:`DepthwiseConv2d`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor], pad: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pad = pad
        return F.conv2d(x, weight, bias, padding=pad, groups=x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        pad = ctx.pad
        batch, channels, height, width = grad.shape
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(
                grad, weight.flip((2, 3)), padding=pad, groups=channels)
        if ctx.needs_input_grad[1]:
            maps = batch * channels
            padded = F.pad(x, (pad, pad, pad, pad)).reshape(
                1, maps, height + 2 * pad, width + 2 * pad)
            grad_w = F.conv2d(
                padded, grad.reshape(maps, 1, height, width), groups=maps)
            grad_w = grad_w.view(batch, channels, 1, 2 * pad + 1,
                                 2 * pad + 1).sum(0)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    Args:
        conv (nn.Conv2d): A convolution, with or without bias.
        bn (nn.BatchNorm2d): The BatchNorm that directly follows it.
    """
    if bn.running_var is None:
        raise ValueError('cannot fold a BatchNorm without running statistics')
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode).to(conv.weight.device,
                                           conv.weight.dtype)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(
            bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def maybe_identity(module: Optional[nn.Module]) -> nn.Module:
    """``module`` itself, or ``nn.Identity()`` for ``None``."""
    return nn.Identity() if module is None else module
