"""Count parameters and multiply-accumulates (MACs) of a forward pass.

The counter watches the ATen operators a forward runs (a
``TorchDispatchMode``), so it sees every operation whatever module or
functional call produced it, and it runs on the ``meta`` device: shapes
only, no memory for activations and no arithmetic, so counting
ConvMixer-1536/20 at 800x1344 takes a second.

What counts, in MACs (one multiply and one add, or one accumulate):

* convolutions, including depthwise and ``padding='same'`` ones:
  ``output elements x (input channels / groups) x kernel area``;
* matrix products (``mm``, ``addmm``, ``bmm``, and the attention products
  inside ``scaled_dot_product_attention``): ``M x K x N`` per matrix;
* average pooling: one per window element that is summed;
  adaptive pooling and means: one per input element;
* normalisations: one per element for batch norm (a per-channel scale and
  shift, as in inference), two per element for group and layer norm
  (statistics, then normalise and scale);
* resizing: per output element the taps it mixes (2x2 bilinear, 4x4
  bicubic, 1 nearest).

Element-wise operations (activations, residual additions, layer scales,
softmax) are not counted, as no published figure counts them. fvcore's
and mmengine's counters skip average pooling and ``padding='same'``
convolutions, so the figures here are slightly higher than theirs for
PoolFormer and ConvMixer.
"""
import itertools
import math
from collections import Counter
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape)


def _conv(args, out) -> int:
    weight = args[1]
    # weight [out, in / groups, *kernel]: every output element takes
    # in / groups x kernel products. Transposed, weight [in, out / groups,
    # *kernel]: every input element is spread over out / groups x kernel.
    transposed = len(args) > 6 and bool(args[6])
    elements = args[0] if transposed else out
    return _numel(elements.shape) * _numel(weight.shape[1:])


def _mm(args, out) -> int:
    a, b = args[0], args[1]
    return _numel(a.shape) * int(b.shape[-1])


def _addmm(args, out) -> int:
    return _mm(args[1:], out)


def _bmm(args, out) -> int:
    a, b = args[0], args[1]
    return _numel(a.shape) * int(b.shape[-1])


def _baddbmm(args, out) -> int:
    return _bmm(args[1:], out)


def _attention(args, out) -> int:
    # q: [..., L, E], k: [..., S, E], v: [..., S, Ev]: q @ k^T and p @ v.
    q, k, v = args[:3]
    batch = _numel(q.shape[:-2])
    length, source = int(q.shape[-2]), int(k.shape[-2])
    return batch * length * source * (int(q.shape[-1]) + int(v.shape[-1]))


def _avg_pool(args, out) -> int:
    kernel = args[1]
    kernel = [kernel] * 2 if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * 2
    return _numel(out.shape) * _numel(kernel)


def _input_elements(args, out) -> int:
    return _numel(args[0].shape)


def _twice_input_elements(args, out) -> int:
    return 2 * _numel(args[0].shape)


def _output_taps(taps: int) -> Callable:
    return lambda args, out: taps * _numel(out.shape)


RULES: Dict[object, Callable] = {
    aten.convolution: _conv,
    aten.mm: _mm,
    aten.addmm: _addmm,
    aten.bmm: _bmm,
    aten.baddbmm: _baddbmm,
    aten._scaled_dot_product_flash_attention_for_cpu: _attention,
    aten._scaled_dot_product_efficient_attention: _attention,
    aten._scaled_dot_product_flash_attention: _attention,
    aten._scaled_dot_product_cudnn_attention: _attention,
    aten.avg_pool2d: _avg_pool,
    aten._adaptive_avg_pool2d: _input_elements,
    aten.mean: _input_elements,
    aten.native_batch_norm: _input_elements,
    aten._native_batch_norm_legit: _input_elements,
    aten._native_batch_norm_legit_no_training: _input_elements,
    aten.native_group_norm: _twice_input_elements,
    aten.native_layer_norm: _twice_input_elements,
    aten.upsample_bilinear2d: _output_taps(4),
    aten.upsample_bicubic2d: _output_taps(16),
    aten.upsample_nearest2d: _output_taps(1),
}


def _op_name(func, args) -> str:
    name = func._overloadpacket.__name__
    if name == 'convolution' and int(args[8]) > 1 and int(
            args[8]) == int(args[0].shape[1]):
        return 'depthwise_convolution'
    return name


class MacCounter(TorchDispatchMode):
    """Accumulate MACs per operator while active (depthwise convolutions
    apart from the others, as counters disagree about them)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = RULES.get(func._overloadpacket)
        if rule is not None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.macs[_op_name(func, args)] += rule(args, first)
        return out

    @property
    def total(self) -> int:
        return sum(self.macs.values())


def count_macs(model: nn.Module,
               input_shape: Sequence[int],
               forward: Callable = None) -> Tuple[int, Counter]:
    """MACs of ``forward(model, x)`` (default ``model(x)``) for an input
    of ``input_shape``, in eval mode without gradients. Works on a model
    on the ``meta`` device (nothing is computed) as on a real one."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device('cpu')
    x = torch.zeros(tuple(input_shape), device=device)
    was_training = model.training
    model.eval()
    counter = MacCounter()
    try:
        with torch.no_grad(), counter:
            (forward or (lambda m, t: m(t)))(model, x)
    finally:
        model.train(was_training)
    return counter.total, counter.macs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def classification_figures(family: type, arch: str,
                           size: Sequence[int] = (224, 224)) -> dict:
    """Params and MACs of ``family``'s ImageNet classifier for ``arch``
    (every unit, no dense-prediction parts, the classification head), the
    model the published figures describe; built on the meta device."""
    with torch.device('meta'):
        backbone = family(arch=arch, **family.classifier_kwargs())
        head = family.classifier_head(backbone.unit_channels[-1])
    dense = [p for n, p in backbone.named_parameters()
             if backbone.is_new_key(n)]

    def forward(model, x):
        return head(model.unit_outputs(x, [len(model.units) - 1])[0])

    macs, by_op = count_macs(backbone, (1, 3, *size), forward)
    params = (count_params(backbone) - sum(p.numel() for p in dense) +
              count_params(head))
    return dict(params=params, macs=macs, by_op=by_op)


def dense_figures(backbone: nn.Module, size: Sequence[int]) -> dict:
    """Params and MACs of ``backbone`` as built (its outputs, level norms
    and pyramid included) for one image of ``size`` (H, W)."""
    macs, by_op = count_macs(backbone, (1, 3, *size))
    return dict(params=count_params(backbone), macs=macs, by_op=by_op)
