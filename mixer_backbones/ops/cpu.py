"""Optional CPU fast paths for the package's backbones.

The models are plain PyTorch. ``optimize(model)`` makes them faster on
CPUs, in place and with the same state dict and outputs (within float
rounding), by giving some of their modules a forward that calls oneDNN's
fused kernels through PyTorch's private operators:

- a 1x1 convolution with its activation as a post-op (exact GELU or
  ReLU), and a 1x1 convolution with the residual addition as a post-op
  (the MetaFormer MLPs, ConvMixer's stem and channel mixers,
  EfficientFormerV2's FFNs);
- for channels-last inputs, those convolutions' weights kept in oneDNN's
  own layout until the weights change;
- the pooling token mixer as one ``lerp`` over ``x`` (the GroupNorm's
  affine and the layer scale folded into a per-channel factor);
- ConvMixer's token-mixer residual as one ``addcmul``;
- the pointwise linear layers of the MetaFormer baselines (their MLPs,
  separable convolutions and attention projections, on channels-last
  maps) as 1x1 convolutions of the channels-last NCHW view, which oneDNN
  runs 1.2-2x faster than the matrix product of ``nn.Linear`` (public
  operators; also in training);
- the training backward of large-kernel depthwise convolutions as two
  more depthwise convolutions, which oneDNN runs far faster than its own
  backward (plain PyTorch operators; the only path that applies while
  autograd records).

The fused paths run only where they are exact and pay: on the CPU, in
fp32, in eval mode, without autograd, outside ``torch.compile``, tracing
and ONNX export; anywhere else the module's own plain forward runs. If the
private operators are missing (a torch release that renamed them, a build
without oneDNN) or fail, ``optimize`` warns once and the models keep their
plain forward.

    >>> from mixer_backbones.ops import cpu
    >>> model = cpu.optimize(model.eval().switch_to_deploy())
"""
import warnings
import weakref
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.convmixer import (ChannelAffine, ConvActivationNorm,
                                ConvMixerBlock)
from ..models.efficientformer_v2 import EfficientFormerV2Block
from ..models.layers import ConvMlp, PoolingMixer
from ..models.metaformer import MetaFormerBlock
from ..models.metaformer_baselines import (GlobalAttention, LinearMlp,
                                           SeparableConvMixer)

__all__ = ['optimize', 'fused_ops_available', 'DepthwiseConv2d']

# Why the fused operators cannot be used, once known ('' while usable).
_unavailable: Optional[str] = None


def _private_ops() -> Tuple[Callable, Callable]:
    """oneDNN's fused pointwise convolution and weight reorder (private
    PyTorch operators; renamed or removed in some future release)."""
    return (torch.ops.mkldnn._convolution_pointwise,
            torch._C._nn.mkldnn_reorder_conv2d_weight)


def _disable(reason: str) -> None:
    global _unavailable
    if not _unavailable:
        warnings.warn(
            f'mixer_backbones.ops.cpu: oneDNN fused kernels unavailable '
            f'({reason}); the models run their plain PyTorch forward',
            RuntimeWarning,
            stacklevel=3)
    _unavailable = reason


def fused_ops_available() -> bool:
    """Whether oneDNN's fused kernels run here and give the plain result
    (checked once on a small convolution; a failure warns once)."""
    global _unavailable
    if _unavailable is None:
        try:
            if not torch.backends.mkldnn.is_available():
                raise RuntimeError('this torch build has no oneDNN')
            conv, act = nn.Conv2d(4, 4, 1), nn.GELU()
            x = torch.randn(1, 4, 3, 3)
            with torch.no_grad():
                fused = _conv_act(conv, act, x)
                if not torch.allclose(fused, act(conv(x)), atol=1e-5):
                    raise RuntimeError('wrong results')
            _unavailable = ''
        except Exception as err:  # any failure means: do not use them
            _disable(f'{type(err).__name__}: {err}')
    return not _unavailable


def _fast_path(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether a fused inference kernel may run for ``module(x)``."""
    return (not _unavailable and not module.training
            and x.device.type == 'cpu' and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and
                     (x.requires_grad or any(
                         p.requires_grad for p in module.parameters())))
            and not _tracing())


def _tracing() -> bool:
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export())


# conv -> ((weight version, weight address), weight in oneDNN's layout)
_PACKED_WEIGHTS: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()


def _weight(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv``'s weight for a fused convolution of ``x``: for channels-last
    inputs reordered once into oneDNN's layout and kept (outside the
    module) until the weight changes; otherwise the plain weight."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return conv.weight
    weight = conv.weight
    key = (weight._version, weight.data_ptr())
    entry = _PACKED_WEIGHTS.get(conv)
    if entry is None or entry[0] != key:
        packed = _private_ops()[1](weight.detach().to_mkldnn(),
                                   list(conv.padding), list(conv.stride),
                                   list(conv.dilation), conv.groups,
                                   list(x.shape))
        entry = _PACKED_WEIGHTS[conv] = (key, packed)
    return entry[1]


def _post_op(act: nn.Module) -> Optional[Tuple[str, Optional[str]]]:
    """oneDNN's exact post-op for ``act``, or None."""
    if isinstance(act, nn.GELU) and act.approximate == 'none':
        return 'gelu', 'none'
    if isinstance(act, nn.ReLU):
        return 'relu', None
    return None


def _fusable_conv(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.weight.dtype == torch.float32
            and not isinstance(conv.padding, str)
            and conv.padding_mode == 'zeros')


def _conv_act(conv: nn.Conv2d, act: nn.Module,
              x: torch.Tensor) -> torch.Tensor:
    """``act(conv(x))`` as one oneDNN convolution."""
    name, algorithm = _post_op(act)
    return _private_ops()[0](x, _weight(conv, x), conv.bias,
                             list(conv.padding), list(conv.stride),
                             list(conv.dilation), conv.groups, name, [],
                             algorithm)


def _conv_add(conv: nn.Conv2d, x: torch.Tensor,
              residual: torch.Tensor) -> torch.Tensor:
    """``residual + conv(x)`` as one oneDNN convolution."""
    return _private_ops()[0].binary(x, residual, _weight(conv, x), conv.bias,
                                    list(conv.padding), list(conv.stride),
                                    list(conv.dilation), conv.groups, 'add',
                                    None, None, [], None)


def _guarded(fused: Callable) -> Callable:
    """A forward that runs ``fused`` where a fused kernel may run, the
    plain forward elsewhere, and for good after a failure of the private
    operators (with one warning)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path(x, self):
            try:
                return fused(self, x)
            except (RuntimeError, AttributeError) as err:
                _disable(f'{type(err).__name__}: {err}')
        return super(type(self), self).forward(x)

    return forward


# --------------------------------------------------------- MetaFormer --
def _inverse_std(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(var + eps)`` over (C, H, W) per sample, (N, 1, 1, 1);
    group norm's kernel computes it in one pass, several times faster than
    ``var_mean`` on a channels-last map."""
    batch, channels, height, width = x.shape
    rstd = torch.native_group_norm(x, None, None, batch, channels,
                                   height * width, 1, eps)[2]
    return rstd.view(batch, 1, 1, 1)


def _pooling_forward(block: MetaFormerBlock,
                     x: torch.Tensor) -> torch.Tensor:
    # pool(GN(x)) - GN(x) = (gamma / sigma) * (pool(x) - x) for one
    # group: the mean and the shift cancel, as pooling without padding
    # keeps constants. With the layer scale, one lerp over x.
    norm = block.norm1
    if isinstance(norm, nn.GroupNorm):
        scale = norm.weight.view(1, -1, 1, 1) * _inverse_std(x, norm.eps)
    else:
        scale = torch.ones((), dtype=x.dtype)
    if not isinstance(block.layer_scale1, nn.Identity):
        scale = scale * block.layer_scale1.weight.view(-1, 1, 1)
    x = torch.lerp(x, block.token_mixer.pool(x), scale.to(x.dtype))
    mlp = block.mlp
    hidden = _conv_act(mlp.fc1, mlp.act, block.norm2(x))
    if isinstance(block.layer_scale2, nn.Identity):
        return _conv_add(mlp.fc2, hidden, x)
    return x + block.layer_scale2(mlp.fc2(hidden))


class _PoolingBlock(MetaFormerBlock):
    forward = _guarded(_pooling_forward)


def _fusable_pooling_block(block: nn.Module) -> bool:
    mlp = block.mlp
    norm = block.norm1
    return (type(block) is MetaFormerBlock
            and isinstance(block.token_mixer, PoolingMixer)
            and isinstance(block.res_scale1, nn.Identity)
            and isinstance(block.res_scale2, nn.Identity)
            and (isinstance(norm, nn.Identity) or
                 (isinstance(norm, nn.GroupNorm) and norm.num_groups == 1
                  and norm.affine))
            and isinstance(mlp, ConvMlp)
            and all(
                isinstance(m, nn.Identity)
                for m in (mlp.norm1, mlp.norm2, mlp.drop1, mlp.drop2))
            and _post_op(mlp.act) is not None
            and _fusable_conv(mlp.fc1) and _fusable_conv(mlp.fc2))


# ---------------------------------------------------------- ConvMixer --
def _conv_act_norm_forward(layer: ConvActivationNorm,
                           x: torch.Tensor) -> torch.Tensor:
    return layer.act_norm.norm(_conv_act(layer.conv, layer.act_norm.act, x))


class _ConvActivationNorm(ConvActivationNorm):
    forward = _guarded(_conv_act_norm_forward)


def _convmixer_block_forward(block: ConvMixerBlock,
                             x: torch.Tensor) -> torch.Tensor:
    mixer = block.token_mixer
    value = mixer.act_norm.act(mixer.conv(x))
    norm = mixer.act_norm.norm
    if isinstance(norm, ChannelAffine) and norm.shift is None and (
            norm.scale is not None):  # the deploy form: one pass over x
        x = torch.addcmul(x, value, norm.scale.view(1, -1, 1, 1))
    else:
        x = x + norm(value)
    return block.channel_mixer(x)


class _ConvMixerBlock(ConvMixerBlock):
    forward = _guarded(_convmixer_block_forward)


# -------------------------------------------------- EfficientFormerV2 --
def _efficientformer_v2_block_forward(block: EfficientFormerV2Block,
                                      x: torch.Tensor) -> torch.Tensor:
    if block.token_mixer is not None:
        x = x + block.token_mixer(x)
    mlp = block.mlp
    hidden = _conv_act(mlp.fc1, mlp.act, x)
    hidden = mlp.act(mlp.mid(hidden))
    return _conv_add(mlp.fc2, hidden, x)


class _EfficientFormerV2Block(EfficientFormerV2Block):
    forward = _guarded(_efficientformer_v2_block_forward)


def _fusable_efficientformer_v2_block(block: nn.Module) -> bool:
    """The deploy form of a block (BatchNorms, layer scales, drop path and
    dropout gone): its FFN's first 1x1 conv takes the activation, its
    last the residual addition."""
    mlp = block.mlp
    plain = (mlp.norm1, mlp.mid_norm, mlp.norm2, mlp.drop, block.drop_path,
             block.layer_scale2) + ((block.layer_scale1, )
                                    if block.token_mixer is not None else ())
    return (type(block) is EfficientFormerV2Block
            and all(isinstance(m, nn.Identity) for m in plain)
            and _fusable_conv(mlp.fc1) and _fusable_conv(mlp.fc2)
            and _post_op(mlp.act) is not None)


# ------------------------------------------ depthwise conv backward --
class DepthwiseConv2d(nn.Conv2d):
    """A stride-1, same-padded depthwise convolution whose CPU training
    backward (for odd kernels) is two more depthwise convolutions:

    - the input gradient is the output gradient convolved with the
      flipped kernel (same padding);
    - the weight gradient of channel ``c`` is the padded input of ``c``
      correlated with its output gradient, a depthwise convolution over
      the ``N * C`` (image, channel) maps with the gradient as kernel,
      summed over the images.

    The forward and the parameters are ``nn.Conv2d``'s; for even kernels
    (asymmetric padding), off the CPU, in another dtype, under autocast or
    compilation, or without autograd it is exactly ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.kernel_size[0] % 2 == 1 and x.device.type == 'cpu'
                and x.dtype == torch.float32
                and torch.is_grad_enabled()
                and (x.requires_grad or self.weight.requires_grad)
                and not torch.is_autocast_enabled('cpu') and not _tracing()):
            return _DepthwiseConv.apply(x, self.weight, self.bias,
                                        self.kernel_size[0] // 2)
        return super().forward(x)


def _plain_depthwise(conv: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d:
        return False
    kernel = conv.kernel_size
    return (kernel[0] == kernel[1]
            and kernel[0] % 2 == 1 and conv.groups == conv.in_channels ==
            conv.out_channels and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding_mode == 'zeros'
            and conv.padding in ('same', (kernel[0] // 2, ) * 2))


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


# -------------------------------------------------------------- apply --
class _PointwiseLinear(nn.Linear):
    """``nn.Linear`` over the last dimension of a channels-last map (N, H,
    W, C), computed as a 1x1 convolution of its NCHW view on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.device.type != 'cpu':
            return super().forward(x)
        weight = self.weight.view(*self.weight.shape, 1, 1)
        return F.conv2d(x.permute(0, 3, 1, 2), weight,
                        self.bias).permute(0, 2, 3, 1)


def _pointwise_linears(module: nn.Module) -> list:
    """The plain ``nn.Linear`` children of the baselines' channels-last
    modules."""
    if not isinstance(module,
                      (LinearMlp, SeparableConvMixer, GlobalAttention)):
        return []
    return [m for m in module.children() if type(m) is nn.Linear]


def optimize(model: nn.Module) -> nn.Module:
    """Give ``model``'s modules their CPU fast paths, in place (see the
    module's docstring): the same parameters, buffers, state dict and
    outputs within float rounding. Idempotent; returns ``model``.

    Apply it after ``switch_to_deploy()`` for inference (the residual
    fusions need the layer scales folded), or to a training model for the
    depthwise-convolution backward and the baselines' pointwise layers.
    """
    fused = fused_ops_available()
    for module in model.modules():
        if _plain_depthwise(module):
            module.__class__ = DepthwiseConv2d
        for linear in _pointwise_linears(module):
            linear.__class__ = _PointwiseLinear
        if not fused:
            continue
        if isinstance(module, MetaFormerBlock) and _fusable_pooling_block(
                module):
            module.__class__ = _PoolingBlock
        elif type(module) is ConvMixerBlock:
            module.__class__ = _ConvMixerBlock
        elif type(module) is EfficientFormerV2Block and (
                _fusable_efficientformer_v2_block(module)):
            module.__class__ = _EfficientFormerV2Block
        elif type(module) is ConvActivationNorm and _fusable_conv(
                module.conv) and _post_op(module.act_norm.act) is not None:
            module.__class__ = _ConvActivationNorm
    return model
