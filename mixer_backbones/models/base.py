"""The dense-backbone contract, written once for every family.

A family builds ``self.stem`` and a list of *units* (``self.stages`` for the
hierarchical families, ``self.blocks`` for the isotropic ConvMixer) and
declares its arch table and checkpoint converter; this class provides what
must mean the same in every family: ``arch`` parsing, ``out_indices``,
per-level output norms, ``frozen_stages``, ``norm_eval``, ``with_cp``,
input checks and pretrained loading that refuses what does not fit.
"""
import copy
import functools
import re
from contextlib import contextmanager, nullcontext
from typing import (Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple, Union)

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import (CheckpointError, check_finite, extract_state_dict,
                          load_checkpoint_file, strip_prefix)
from .layers import GroupNorm1
from .validation import check_arch_dict, check_arguments, split_init_cfg

StateDict = Dict[str, torch.Tensor]


class MeanTokens(nn.Module):
    """Global average over the tokens: (N, C, H, W) or (N, L, C) to
    (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1) if x.dim() == 4 else x.mean(1)


@contextmanager
def frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Run ``module`` with its BatchNorms normalising by batch statistics
    (in training mode) but leaving their running statistics unchanged.

    Gradient checkpointing recomputes a block's forward during backward;
    without this, every train-mode BatchNorm in the block would update its
    running mean and variance a second time per step. A momentum of 0 keeps
    the running statistics exactly (also in the cumulative ``momentum=None``
    mode) while the recomputation saves the same tensors for backward as
    the first forward did; the batch counter is restored afterwards.
    """
    norms = [
        m for m in module.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [(m.momentum, m.num_batches_tracked.clone()
              if m.num_batches_tracked is not None else None) for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, saved):
            norm.momentum = momentum
            if count is not None:
                norm.num_batches_tracked.copy_(count)


def _recompute_contexts(module: nn.Module):
    return nullcontext(), frozen_batchnorm_statistics(module)


def checkpointed(module: nn.Module, *args) -> torch.Tensor:
    """``module(*args)`` with its activations recomputed in backward
    instead of stored; outputs, gradients and BatchNorm statistics are the
    same as a plain call."""
    return cp.checkpoint(
        module,
        *args,
        use_reentrant=False,
        context_fn=functools.partial(_recompute_contexts, module))


class BaseDenseBackbone(BaseModule):
    """Base class of the package's dense-prediction backbones.

    A family subclasses it, declares itself in the class attributes below
    (everything the tools and tests know about a family is here; see
    ``docs/adding_a_family.md``), passes the contract arguments to
    ``super().__init__``, builds ``self.stem`` and the module list named by
    ``unit_name``, then calls :meth:`setup_outputs`.

    Attributes:
        family_name (str): The family's name in the tools (``'poolformer'``);
            empty for abstract classes.
        arch_zoo (dict): Named variants, ``{name: settings}``.
        arch_keys (tuple): Keys a custom ``arch`` dict must provide.
        arch_optional_keys (tuple): Other keys a custom ``arch`` dict may
            provide; any other key is refused.
        published (dict): ``{arch: dict(params=M, gmacs=G)}``, the
            ImageNet classifier's published parameters (millions) and
            GMACs at 224x224, checked by the FLOPs counter's tests.
        published_uncounted_ops (tuple): Operator kinds of
            :mod:`mixer_backbones.flops` that the published GMACs leave
            out.
        timm_names (dict): ``{arch: timm model name}``, the independent
            implementation the tests and the benchmark compare against.
        mmpretrain (dict, optional): How mmpretrain builds the family, for
            the benchmark: ``type`` (its backbone class), ``archs`` (its
            names of ours, where they differ), ``kwargs`` (per arch),
            ``stem`` and ``units`` (its attribute names), ``unit_step``
            (positions per unit in ``units``).
        cpu_memory_format (torch.memory_format): The memory format the
            family's inference form runs fastest in on CPUs.
        benchmark_kwargs (dict): Constructor arguments that make the
            backbone time like timm's ``forward_features``.
        tiny_arch (dict): A small custom ``arch`` for fast tests of every
            option (compilation, export, mixed precision).
        unit_name (str): Attribute holding the selectable units.
        unit_word (str): What a unit is called in messages.
        classifier_prefixes (tuple): Checkpoint keys (after conversion) that
            belong to the classification model and are ignored on loading.
        new_prefixes (tuple): Parts added for dense prediction (output
            norms, a pyramid): missing from a checkpoint, they keep their
            initialisation; in a checkpoint but not built (levels not
            requested), they are ignored.
        min_input_size (int): Smallest input height/width accepted.

    Args:
        in_channels (int): Input channels.
        out_indices (int | Sequence[int]): Units whose outputs are
            returned, negative allowed.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem
            and units 0..k-1 with their output norms.
        norm_eval (bool): BatchNorms in eval mode in ``train()``.
        with_cp (bool): Checkpoint each block.
        init_cfg (dict, optional): Initialisation, e.g. ``dict(type=
            'Pretrained', checkpoint=...)``.
    """
    family_name = ''
    arch_zoo: Dict[str, dict] = {}
    arch_keys: Tuple[str, ...] = ()
    arch_optional_keys: Tuple[str, ...] = ()
    published: Dict[str, dict] = {}
    published_uncounted_ops: Tuple[str, ...] = ()
    timm_names: Dict[str, str] = {}
    mmpretrain: Optional[dict] = None
    cpu_memory_format = torch.contiguous_format
    benchmark_kwargs: dict = {}
    tiny_arch: dict = {}
    unit_name = 'stages'
    unit_word = 'stage'
    classifier_prefixes: Tuple[str, ...] = ('head.', 'norm.')
    new_prefixes: Tuple[str, ...] = ('out_norms.', )
    min_input_size = 1
    arch_name = 'custom'

    def __init__(self,
                 *,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        split_init_cfg(type(self).__name__, init_cfg)  # refuse bad forms now
        check_arguments(
            type(self).__name__,
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp)
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deployed = False

    def init_arch(self, arch: Union[str, dict]) -> dict:
        """Parse ``arch`` and remember its name for messages."""
        self.arch_settings = self.parse_arch(arch)
        self.arch_name = arch.lower() if isinstance(arch, str) else 'custom'
        return self.arch_settings

    # ----------------------------------------------------------- arch ----
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """Settings for ``arch``: a key of ``arch_zoo`` or a custom dict."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'{cls.__name__}: unknown arch {arch!r}; valid archs: '
                    f'{", ".join(cls.arch_zoo)} (or a dict with keys '
                    f'{", ".join(cls.arch_keys)})')
            return copy.deepcopy(cls.arch_zoo[key])
        if isinstance(arch, Mapping):
            check_arch_dict(cls.__name__, arch, cls.arch_keys,
                            cls.arch_optional_keys)
            return copy.deepcopy(dict(arch))
        raise TypeError(f'{cls.__name__}: arch must be a str or a dict, '
                        f'got {type(arch).__name__} {arch!r}')

    # ------------------------------------------------- family queries --
    @classmethod
    def smallest_arch(cls) -> str:
        """The arch with the fewest published GMACs (the one the
        end-to-end tests and the GPU check's benchmark run)."""
        return min(cls.published, key=lambda a: cls.published[a]['gmacs'])

    @classmethod
    def classifier_head(cls, channels: int,
                        num_classes: int = 1000) -> nn.Module:
        """The ImageNet head the published figures include after the last
        unit (final norm, global average, linear layer(s)), for the FLOPs
        counter."""
        return nn.Sequential(
            nn.GroupNorm(1, channels), MeanTokens(),
            nn.Linear(channels, num_classes))

    @classmethod
    def classifier_kwargs(cls) -> dict:
        """Constructor arguments that build the backbone as the classifier
        runs it: every unit, raw outputs of the last."""
        return dict(out_indices=-1)

    # -------------------------------------------------------- outputs ----
    @property
    def units(self) -> nn.ModuleList:
        return getattr(self, self.unit_name)

    def setup_outputs(
        self,
        unit_channels: Sequence[int],
        out_norm: Optional[Callable[[int], nn.Module]] = GroupNorm1
    ) -> None:
        """Validate the contract arguments given to ``__init__`` against
        the built units, build the output norms of the requested levels and
        apply freezing.

        Args:
            unit_channels: Channels of each unit's output.
            out_norm: Factory ``channels -> module`` of the per-level output
                norm, or ``None`` for none.
        """
        num_units = len(self.units)
        self.out_indices = self._normalize_out_indices(
            self.out_indices, num_units)
        frozen_stages = self.frozen_stages
        if not isinstance(frozen_stages,
                          int) or not (-1 <= frozen_stages <= num_units):
            raise ValueError(
                f'{type(self).__name__}: frozen_stages={frozen_stages!r} is '
                f'out of range; valid: -1 (nothing), 0 (stem) ... '
                f'{num_units} (stem and all {num_units} {self.unit_word}s)')
        self.unit_channels = list(unit_channels)
        self.out_channels = [unit_channels[i] for i in self.out_indices]
        self.out_norms = nn.ModuleDict()
        if out_norm is not None:
            for i in self.out_indices:
                self.out_norms[str(i)] = out_norm(unit_channels[i])
        self._freeze()

    def _normalize_out_indices(self, out_indices, num_units) -> Tuple[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(f'{type(self).__name__}: out_indices must be an '
                            f'int or a non-empty sequence of ints, got '
                            f'{out_indices!r}')
        normalized = []
        for index in out_indices:
            if not isinstance(index,
                              int) or not (-num_units <= index < num_units):
                raise ValueError(
                    f'{type(self).__name__}: out_indices contains '
                    f'{index!r}, out of range for {num_units} '
                    f'{self.unit_word}s; valid: {-num_units} ... '
                    f'{num_units - 1}')
            normalized.append(index % num_units)
        if len(set(normalized)) != len(normalized):
            raise ValueError(f'{type(self).__name__}: out_indices '
                             f'{tuple(out_indices)} name a '
                             f'{self.unit_word} twice')
        return tuple(sorted(normalized))

    # -------------------------------------------------------- forward ----
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs the network cannot take."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            shown = x.dtype if isinstance(x, torch.Tensor) else type(x)
            raise TypeError(
                f'{type(self).__name__} expects a floating-point tensor '
                f'(a normalised image batch, as the data preprocessor '
                f'gives), got {shown}; convert it with .float() and '
                f'normalise it first')
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects a 4-D NCHW '
                             f'input, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} was built for in_channels='
                f'{self.in_channels} but got an input with {x.shape[1]} '
                f'channels (shape {tuple(x.shape)})')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f'{type(self).__name__}: input of size '
                f'{tuple(x.shape[-2:])} is smaller than the minimum '
                f'{self.min_input_size}x{self.min_input_size}')
        limit = self.min_single_image_training_size()
        if (limit and self.training and x.shape[0] == 1
                and max(x.shape[-2:]) < limit and any(
                    isinstance(m, _BatchNorm) and m.training
                    for m in self.modules())):
            raise ValueError(
                f'{type(self).__name__}: a training batch of one '
                f'{x.shape[-2]}x{x.shape[-1]} image leaves its BatchNorms '
                f'a 1x1 map (one value per channel) to normalise; train '
                f'with 2 or more images per batch, with inputs of at least '
                f'{limit} pixels on one side, or with norm_eval=True')

    def min_single_image_training_size(self) -> int:
        """Smallest input side for which a training batch of one image
        still gives every BatchNorm more than one value per channel; 0 when
        there is no such limit (no BatchNorm)."""
        return 0

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_unit(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Run unit ``index``; the default runs it whole, checkpointed when
        ``with_cp`` is set. Hierarchical families override it to checkpoint
        block by block."""
        return self.run_block(self.units[index], x)

    def run_block(self, block: nn.Module, x: torch.Tensor,
                  *args) -> torch.Tensor:
        """``block(x, *args)``, checkpointed when ``with_cp`` is set and
        the call builds a graph."""
        if self.with_cp and self.training and torch.is_grad_enabled() and (
                x.requires_grad or any(p.requires_grad
                                       for p in block.parameters())):
            return checkpointed(block, x, *args)
        return block(x, *args)

    def forward_outputs(self, features: List[torch.Tensor]) -> tuple:
        """Map the selected units' outputs to the returned tuple."""
        return tuple(self.out_norms[str(i)](feature) if str(i) in
                     self.out_norms else feature
                     for i, feature in zip(self.out_indices, features))

    def unit_outputs(self,
                     x: torch.Tensor,
                     indices: Optional[Sequence[int]] = None
                     ) -> List[torch.Tensor]:
        """Raw outputs (before output norms or a pyramid) of the units at
        ``indices`` (default ``out_indices``), in order; runs the stem and
        the units up to the last of them."""
        indices = self.out_indices if indices is None else tuple(indices)
        x = self.forward_stem(x)
        features = []
        for index in range(max(indices) + 1):
            x = self.forward_unit(index, x)
            if index in indices:
                features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> tuple:
        self.check_input(x)
        return self.forward_outputs(self.unit_outputs(x))

    # ----------------------------------------------- freezing, norm_eval --
    def _frozen_modules(self) -> List[nn.Module]:
        """The stem and units < ``frozen_stages`` with their output norms,
        and the units after the last output (they never get a gradient, so
        DDP must not wait for one)."""
        modules = []
        if self.frozen_stages >= 0:
            modules.append(self.stem)
        for index, unit in enumerate(self.units):
            if index < self.frozen_stages or index > self.out_indices[-1]:
                modules.append(unit)
                if str(index) in self.out_norms:
                    modules.append(self.out_norms[str(index)])
        return modules

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'BaseDenseBackbone':
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert a state dict in any published layout to this package's.

        Returns the converted dict and the detected layout's name; a dict
        already in this package's layout is returned unchanged.
        """
        raise NotImplementedError

    def default_init(self) -> None:
        """Initialise weights as for training from scratch: truncated
        normal (std 0.02) for convolutions and linear layers, zero biases,
        unit norms."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.GroupNorm, nn.LayerNorm, _BatchNorm)):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Initialise from scratch, or from ``init_cfg=dict(type=
        'Pretrained', checkpoint=..., prefix=None)`` in any published
        layout (see :meth:`load_pretrained`).

        ``init_cfg`` may also be a list (as mmpretrain-style configs write
        it); the ``Pretrained`` entry is always loaded by
        :meth:`load_pretrained`, all or nothing, after the other entries
        (as mmengine orders them), never by mmengine's loader, which would
        load with ``strict=False``.
        """
        pretrained, others = split_init_cfg(type(self).__name__, self.init_cfg)
        if pretrained is None and others:
            super().init_weights()
            return
        self.default_init()
        if others:
            from mmengine.model import initialize
            initialize(self, others)
        if pretrained is not None:
            self.load_pretrained(
                pretrained['checkpoint'], prefix=pretrained.get('prefix'))
        self._is_init = True

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: Optional[str] = None) -> dict:
        """Load weights from a file, URL or ``hf-hub:`` name, converting
        from its layout (detected from its keys).

        Nothing is loaded unless every weight of the backbone other than
        the new output norms is in the checkpoint with the right shape, and
        every checkpoint tensor is either used, or belongs to the
        classification head or to the output norm of a level not requested;
        otherwise :class:`CheckpointError` names the
        first mismatches.

        Returns:
            dict: The report (``layout``, ``loaded``, ``new``, ``ignored``).
        """
        converted, layout = self.convert_checkpoint_file(checkpoint, prefix)
        return self.load_converted(converted, source=checkpoint, layout=layout)

    @classmethod
    def convert_checkpoint_file(
            cls,
            checkpoint: str,
            prefix: Optional[str] = None) -> Tuple[StateDict, str]:
        """Read ``checkpoint`` safely and convert it to this package's
        layout; what both :meth:`load_pretrained` and
        ``tools/convert_checkpoint.py`` run.

        Args:
            checkpoint (str): Path, URL or ``hf-hub:`` name.
            prefix (str, optional): Keep only keys under this prefix (e.g.
                ``'backbone.'`` of a detector checkpoint). By default a
                ``backbone.`` prefix (mmpretrain, mmdet, mmseg files) is
                detected and used.
        """
        state = extract_state_dict(load_checkpoint_file(checkpoint))
        if prefix is None and any(k.startswith('backbone.') for k in state):
            prefix = 'backbone.'
        if prefix:
            stripped = strip_prefix(state, prefix)
            if not stripped:
                raise CheckpointError(
                    f'no key of {checkpoint!r} starts with prefix '
                    f'{prefix!r}; first keys: {list(state)[:5]}')
            state = stripped
        check_finite(state, checkpoint)
        try:
            converted, layout = cls.convert_checkpoint(state)
        except CheckpointError as err:
            raise CheckpointError(f'{checkpoint!r}: {err}') from None
        if prefix:
            layout = f"{layout}, under '{prefix}'"
        return converted, layout

    def is_new_key(self, key: str) -> bool:
        """Keys of this model that no classification checkpoint has (the
        output norms and other ``new_prefixes`` parts, BatchNorm batch
        counters) and that keep their initialisation when missing."""
        return key.startswith(self.new_prefixes) or key.endswith(
            'num_batches_tracked')

    def ignored_key_reason(self, key: str) -> Optional[str]:
        """Why a converted checkpoint key that this model lacks may be left
        out: ``'classifier'`` (the classification model's final norm and
        heads: ``weight``/``bias`` or ``fc.weight``/``fc.bias`` under
        ``classifier_prefixes``), a level not built (a ``new_prefixes``
        part, named as the built levels' parts are, of a level this model
        does not build), a family's own reason
        (:meth:`unused_key_reason`), or ``None``: then the key is refused.
        """
        for prefix in self.classifier_prefixes:
            if re.fullmatch(re.escape(prefix) + r'(?:fc\.)?(?:weight|bias)',
                            key):
                return 'classifier'
        for prefix in self.new_prefixes:
            pattern = re.compile(re.escape(prefix) + r'(\d+)\.(.*)')
            match = pattern.fullmatch(key)
            if not match or int(match[1]) >= len(self.units):
                continue
            built = [
                m for m in map(pattern.fullmatch, self.state_dict(
                    keep_vars=True)) if m
            ]
            # A level not built, its part named as a built level's part
            # (e.g. the 'weight' and 'bias' of a norm), or any part when no
            # level is built under the prefix.
            if match[1] not in {m[1] for m in built} and (
                    not built or match[2] in {m[2] for m in built}):
                return (f'{prefix[:-1]} of a level not built here '
                        f'(out_indices={self.out_indices})')
        return self.unused_key_reason(key)

    def unused_key_reason(self, key: str) -> Optional[str]:
        """A family's reason to leave out a checkpoint key its model lacks
        (e.g. a table a published model keeps but never uses); ``None``
        when it has none."""
        return None

    def adapt_to_checkpoint(self, state_dict: StateDict) -> Callable:
        """Switch to the variant of this model that the converted
        checkpoint describes (a family hook; nothing by default) and
        return a function that undoes the switch."""
        return lambda: None

    def load_converted(self,
                       state_dict: StateDict,
                       source: str = 'state dict',
                       layout: str = 'mixer_backbones') -> dict:
        """Load a state dict in this package's layout, all or nothing.

        Every checkpoint tensor must be loaded, or be a classifier key, an
        output norm of a level this model does not request, or a key the
        family knows to be unused (see :meth:`ignored_key_reason`); any
        other key is refused by name, as are missing weights and shape
        mismatches. The report names what was ignored and why.
        """
        undo = self.adapt_to_checkpoint(state_dict)
        try:
            report = self._load_converted(state_dict, source, layout)
        except Exception:
            undo()
            raise
        return report

    def _load_converted(self, state_dict: StateDict, source: str,
                        layout: str) -> dict:
        own = self.state_dict()
        missing = [
            k for k in own if k not in state_dict and not self.is_new_key(k)
        ]
        new = [k for k in own if k not in state_dict and self.is_new_key(k)]
        reasons = {
            k: self.ignored_key_reason(k)
            for k in state_dict if k not in own
        }
        ignored = [k for k, reason in reasons.items() if reason]
        unexpected = [k for k, reason in reasons.items() if not reason]
        mismatched = [(k, tuple(v.shape), tuple(own[k].shape))
                      for k, v in state_dict.items()
                      if k in own and v.shape != own[k].shape]
        if missing or unexpected or mismatched:
            problems = []
            if mismatched:
                problems.append(
                    f'{len(mismatched)} shape mismatches (checkpoint vs '
                    f'model), first: ' +
                    ', '.join(f'{k} {a} vs {b}' for k, a, b in mismatched[:5]))
            if missing:
                problems.append(f'{len(missing)} weights of the model are '
                                f'not in the checkpoint, first: {missing[:5]}')
            if unexpected:
                problems.append(f'{len(unexpected)} checkpoint tensors fit '
                                f'nowhere in the model (neither loaded nor '
                                f'a known classifier or unused key), '
                                f'first: {unexpected[:5]}')
            raise CheckpointError(
                f'{source!r} ({layout} layout) does not fit '
                f'{type(self).__name__}({self.arch_name}); nothing was '
                f'loaded. ' + '; '.join(problems) +
                '. Is it a checkpoint of another arch or another model?')
        self.load_state_dict({
            k: v
            for k, v in state_dict.items() if k in own
        },
                             strict=not new)
        by_reason: Dict[str, List[str]] = {}
        for key in ignored:
            by_reason.setdefault(reasons[key], []).append(key)
        report = dict(
            layout=layout,
            loaded=len(state_dict) - len(ignored),
            new=new,
            ignored=ignored,
            ignored_by_reason=by_reason)
        detail = '; '.join(f'{reason}: {keys}'
                           for reason, keys in by_reason.items()) or 'none'
        print_log(
            f'{type(self).__name__}({self.arch_name}): loaded '
            f'{report["loaded"]} tensors from {source} ({layout} layout); '
            f'newly initialised (not in the checkpoint): {new}; ignored '
            f'checkpoint tensors, by reason: {detail}',
            logger='current')
        return report


def collect_renamed(renamed: Iterable[Tuple[str, str, torch.Tensor]],
                    layout: str) -> StateDict:
    """The converted state dict of ``(source key, new key, tensor)``
    triples; raises :class:`CheckpointError` naming both source keys when
    two of them land on the same name (nothing is silently overwritten)."""
    converted: StateDict = {}
    sources: Dict[str, str] = {}
    for source, new, value in renamed:
        if new in converted:
            raise CheckpointError(
                f'{layout} layout: checkpoint keys {sources[new]!r} and '
                f'{source!r} both convert to {new!r}; refusing to drop '
                f'either')
        converted[new] = value
        sources[new] = source
    return converted
