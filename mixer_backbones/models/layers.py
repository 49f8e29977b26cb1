"""Building blocks shared by the model families.

The MetaFormer families share the pooling token mixer, the 1x1-conv MLP
and layer scale; every family shares stochastic depth and the norm and
activation builders.  Everything here is plain PyTorch: backend-specific
fast paths live in :mod:`mixer_backbones.ops.cpu`.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

CfgType = Union[str, dict]


class _StarReLUFunction(torch.autograd.Function):
    """``scale * relu(x) ** 2 + bias`` keeping only ``x`` for backward.

    Composed of plain operators, autograd would keep both ``relu(x)`` and
    its square (two tensors the size of the MLP's hidden layer, the
    largest activations of a MetaFormer block); the gradients need only
    ``x``: ``d/dx = 2 * scale * relu(x)``, ``d/dscale = relu(x) ** 2``.
    """

    @staticmethod
    def forward(ctx, x, scale, bias):
        ctx.save_for_backward(x, scale)
        return F.relu(x).square_().mul_(scale).add_(bias)

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        relu = F.relu(x)
        grad_x = grad_scale = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * relu * (2 * scale)
        if ctx.needs_input_grad[1]:
            grad_scale = (grad * relu.square()).sum().reshape(1)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum().reshape(1)
        return grad_x, grad_scale, grad_bias


class StarReLU(nn.Module):
    """``scale * relu(x) ** 2 + bias`` with a learnable scalar scale and
    bias, the activation of the MetaFormer baselines (`arXiv 2210.13452
    <https://arxiv.org/abs/2210.13452>`_).

    The scalars are cast to the input's dtype, so under autocast they do
    not promote a half-precision tensor to fp32. When a graph is built,
    backward keeps only the input (see :class:`_StarReLUFunction`): half
    the memory of the plain composition, same values and gradients.

    Args:
        scale_value (float): Initial scale. Defaults to 1.
        bias_value (float): Initial bias. Defaults to 0.
    """

    def __init__(self, scale_value: float = 1., bias_value: float = 0.):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, ), float(scale_value)))
        self.bias = nn.Parameter(torch.full((1, ), float(bias_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, bias = self.scale.to(x.dtype), self.bias.to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad
                                        or self.scale.requires_grad
                                        or self.bias.requires_grad):
            return _StarReLUFunction.apply(x, scale, bias)
        return torch.addcmul(bias, F.relu(x).square(), scale)


# Activation names of the arch tables and of OpenMMLab's ``act_cfg``.
_ACTIVATIONS = {
    'gelu': nn.GELU,
    'relu': nn.ReLU,
    'silu': nn.SiLU,
    'starrelu': StarReLU,
}


def build_activation(cfg: CfgType) -> nn.Module:
    """A fresh activation from a name (``'gelu'``, ``'relu'``, ``'silu'``,
    case-insensitive) or an OpenMMLab ``act_cfg`` such as
    ``dict(type='GELU')``; other types are built from mmengine's
    ``MODELS`` registry (which mmcv fills when imported)."""
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'an activation is a name or a dict with a type, '
                        f'got {cfg!r}')
    cfg = dict(cfg)
    name = cfg.pop('type')
    cfg.pop('inplace', None)  # never in place: inputs may be reused
    key = name.lower() if isinstance(name, str) else name
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key](**cfg)
    return _build_from_registry(dict(type=name, **cfg), 'activation',
                                sorted(_ACTIVATIONS))


def build_norm(cfg: Optional[dict], channels: int) -> nn.Module:
    """A norm layer over ``channels`` from an OpenMMLab ``norm_cfg``.

    ``BN``/``BN2d``, ``SyncBN``, ``GN`` (``num_groups``, default 1: the
    MetaFormer GroupNorm) and ``LN`` (over channels of token tensors) are
    built here, with the result in the input's dtype (see
    :class:`GroupNorm1`); other types come from mmengine's ``MODELS``
    registry. ``requires_grad=False`` freezes the affine parameters (with
    ``norm_eval=True``, a frozen BatchNorm). ``None`` gives
    ``nn.Identity()``.
    """
    if cfg is None:
        return nn.Identity()
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'norm_cfg must be a dict with a type, got {cfg!r}')
    cfg = dict(cfg)
    name = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if name in ('BN', 'BN2d'):
        layer = nn.BatchNorm2d(channels, **cfg)
    elif name == 'SyncBN':
        layer = nn.SyncBatchNorm(channels, **cfg)
    elif name == 'GN':
        layer = GroupNorm(cfg.pop('num_groups', 1), channels, **cfg)
    elif name == 'LN':
        layer = LayerNorm(channels, **cfg)
    else:
        layer = _build_from_registry(
            dict(type=name, num_features=channels, **cfg), 'norm',
            ['BN', 'SyncBN', 'GN', 'LN'])
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


def _build_from_registry(cfg: dict, what: str, known) -> nn.Module:
    from mmengine.registry import MODELS
    if MODELS.get(cfg['type']) is None:
        raise ValueError(f'unknown {what} type {cfg["type"]!r}; built in: '
                         f'{known}, or any type registered in mmengine\'s '
                         f'MODELS (import mmcv.cnn for its layers)')
    return MODELS.build(cfg)


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


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose result comes back in the input's dtype: under
    autocast on GPUs ``group_norm`` computes in fp32, and handing that on
    would make the layers after it keep fp32 tensors for backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


class GroupNorm1(GroupNorm):
    """GroupNorm with one group: normalises over (C, H, W) per sample, the
    norm of the MetaFormer blocks and of the per-level outputs."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__(1, num_channels, eps=eps)


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose result comes back in the input's dtype (see
    :class:`GroupNorm1`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


class PoolingMixer(nn.Module):
    """The pooling token mixer of MetaFormer: ``avg_pool(x) - x``.

    The average excludes padding (``count_include_pad=False``), as in the
    papers; subtracting ``x`` makes the block's residual add the pooled
    value rather than the input twice. It is linear and acts on each
    channel alone (``per_channel_linear``), so a per-channel scale of its
    input, such as a layer scale after it, commutes with it.

    Args:
        pool_size (int): Pooling window. Defaults to 3.
    """

    per_channel_linear = True

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
    when ``norm_cfg`` is given.  Modules are registered in forward order so
    that mmcv's ``fuse_conv_bn`` pairs each BatchNorm with its own conv.

    Args:
        in_channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
        act_cfg (str | dict): Activation. Defaults to ``'gelu'``.
        norm_cfg (dict, optional): Norm after each conv (see
            :func:`build_norm`). Defaults to None (no norm).
        drop (float): Dropout after the activation and at the end.
            Defaults to 0.
        bias (bool): Biases in the convs. Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 act_cfg: CfgType = 'gelu',
                 norm_cfg: Optional[dict] = None,
                 drop: float = 0.,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1, bias=bias)
        self.norm1 = build_norm(norm_cfg, hidden_channels)
        self.act = build_activation(act_cfg)
        self.drop1 = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.fc2 = nn.Conv2d(hidden_channels, in_channels, 1, bias=bias)
        self.norm2 = build_norm(norm_cfg, in_channels)
        self.drop2 = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.norm1(self.fc1(x))))
        return self.drop2(self.norm2(self.fc2(x)))

    def fold_batchnorms(self) -> None:
        """Fold each BatchNorm into the conv before it (eval-mode
        statistics); the norms become ``nn.Identity()``."""
        for conv_name, norm_name in (('fc1', 'norm1'), ('fc2', 'norm2')):
            norm = getattr(self, norm_name)
            if isinstance(norm, _BatchNorm):
                setattr(self, conv_name,
                        fold_batchnorm(getattr(self, conv_name), norm))
                setattr(self, norm_name, nn.Identity())

    def fold_output_scale(self, scale: torch.Tensor) -> None:
        """Multiply the output by the per-channel ``scale`` (a layer scale)
        through ``fc2``'s weights; needs the norms folded already."""
        if not isinstance(self.norm2, nn.Identity):
            raise RuntimeError('fold the norms before the layer scale')
        with torch.no_grad():
            self.fc2.weight.mul_(scale.view(-1, 1, 1, 1))
            if self.fc2.bias is not None:
                self.fc2.bias.mul_(scale)


def fold_batchnorm(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """Return a conv equal to ``bn(conv(x))`` with ``bn`` in eval mode
    (its parameters train or stay frozen as the conv's did).

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
    fused.requires_grad_(conv.weight.requires_grad)
    return fused
