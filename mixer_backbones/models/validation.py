"""Argument checks shared by every family.

Each check runs where the argument is given (the constructor, or the
forward for inputs) and names the argument and the offending value, so a
wrong config fails at once instead of building a model that does something
else: a bool is not taken as an int (``frozen_stages=False`` is not stage
0), a string is not a sequence of stage indices, and an ``arch`` dict may
only hold the keys its family reads.
"""
import functools
import math
import numbers
import os
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)


def _shown(value: Any) -> str:
    return f'{value!r} ({type(value).__name__})'


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    """``value`` must be an int (not a bool) >= ``minimum``."""
    if not _is_int(value):
        raise TypeError(f'{owner}: {name} must be an int, got '
                        f'{_shown(value)}')
    if value < minimum:
        raise ValueError(f'{owner}: {name}={value!r} must be >= {minimum}')


def check_odd_size(owner: str, name: str, value: Any) -> None:
    """A stride-1 window padded by ``size // 2`` on each side: an odd int
    >= 1 keeps the map size (an even one adds a row and a column)."""
    check_int(owner, name, value, 1)
    if value % 2 == 0:
        raise ValueError(f'{owner}: {name}={value!r} must be odd (a window '
                         f'padded by {value // 2} on each side keeps the '
                         f'map size only when its size is odd)')


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f'{owner}: {name} must be True or False, got '
                        f'{_shown(value)}')


def check_positive(owner: str, name: str, value: Any) -> None:
    """A finite real number > 0."""
    if not _is_real(value):
        raise TypeError(f'{owner}: {name} must be a number, got '
                        f'{_shown(value)}')
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f'{owner}: {name}={value!r} must be a finite '
                         f'number > 0')


def check_optional_finite(owner: str, name: str, value: Any) -> None:
    """None, or a finite real number."""
    if value is None:
        return
    if not _is_real(value):
        raise TypeError(f'{owner}: {name} must be a number or None, got '
                        f'{_shown(value)}')
    if not math.isfinite(value):
        raise ValueError(f'{owner}: {name}={value!r} must be finite')


def check_optional_finite_list(owner: str, name: str, value: Any) -> None:
    """A non-empty sequence of None or finite real numbers."""
    if isinstance(value, (str, bytes)) or not isinstance(
            value, Sequence) or not value:
        raise TypeError(f'{owner}: {name} must be a non-empty list of '
                        f'numbers or None, got {_shown(value)}')
    for item in value:
        check_optional_finite(owner, f'{name} entry', item)


def check_drop_path_rate(owner: str, name: str, value: Any) -> None:
    """The largest probability of dropping a block: in [0, 1)."""
    if not _is_real(value):
        raise TypeError(f'{owner}: {name} must be a number, got '
                        f'{_shown(value)}')
    if not 0 <= value < 1:
        raise ValueError(
            f'{owner}: {name}={value!r} is out of range; valid: '
            f'0 <= {name} < 1 (the probability of dropping the last block; '
            f'at 1 it would always be dropped and its kept samples scaled '
            f'by 1 / 0)')


def check_out_indices(owner: str, name: str, value: Any) -> None:
    """An int or a sequence of ints (a string is neither); their range is
    checked against the number of stages where the outputs are set up.
    None stands for a family's default (ConvMixer's)."""
    if value is None or _is_int(value):
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f'{owner}: {name} must be an int or a sequence of '
                        f'ints, got {_shown(value)}')
    for index in value:
        if not _is_int(index):
            raise TypeError(f'{owner}: {name} must hold ints, got '
                            f'{_shown(index)} in {value!r}')


def check_stage_count(owner: str, name: str, value: Any) -> None:
    """``frozen_stages``: an int (not a bool); its range depends on the
    number of stages and is checked where the outputs are set up."""
    if not _is_int(value):
        raise TypeError(f'{owner}: {name} must be an int (-1 for nothing, '
                        f'0 for the stem, k for the stem and the first k '
                        f'stages), got {_shown(value)}')


# The constructor arguments every family may take, by name.
ARGUMENT_CHECKS: Dict[str, Callable[[str, str, Any], None]] = {
    'in_channels': functools.partial(check_int, minimum=1),
    'out_indices': check_out_indices,
    'frozen_stages': check_stage_count,
    'norm_eval': check_bool,
    'with_cp': check_bool,
    'drop_path_rate': check_drop_path_rate,
    'mlp_ratio': check_positive,
    'pool_size': check_odd_size,
    'layer_scale_init_value': check_optional_finite,
    'res_scale_init_values': check_optional_finite_list,
}


def check_arguments(owner: str, **arguments: Any) -> None:
    """Check constructor arguments by name (see ``ARGUMENT_CHECKS``)."""
    for name, value in arguments.items():
        ARGUMENT_CHECKS[name](owner, name, value)


def check_sizes(owner: str, name: str, value: Any, minimum: int) -> None:
    """A non-empty sequence of ints >= ``minimum``."""
    is_sequence = isinstance(value,
                             Sequence) and not isinstance(value, (str, bytes))
    if not is_sequence or not value:
        raise TypeError(f'{owner}: {name} must be a non-empty list of ints, '
                        f'got {_shown(value)}')
    for item in value:
        if not _is_int(item) or item < minimum:
            raise ValueError(f'{owner}: {name} must hold ints >= {minimum}, '
                             f'got {_shown(item)} in {value!r}')


# Checks of the arch-dict entries, by key; each family reads a subset.
ARCH_CHECKS: Dict[str, Callable[[str, str, Any], None]] = {
    'depths': functools.partial(check_sizes, minimum=1),
    'widths': functools.partial(check_sizes, minimum=1),
    'vit_num': functools.partial(check_int, minimum=0),
    'dim': functools.partial(check_int, minimum=1),
    'depth': functools.partial(check_int, minimum=1),
    'kernel_size': functools.partial(check_int, minimum=1),
    'patch_size': functools.partial(check_int, minimum=1),
    'num_heads': functools.partial(check_int, minimum=1),
    'key_dim': functools.partial(check_int, minimum=1),
    'attn_ratio': check_positive,
    'layer_scale_init_value': check_optional_finite,
}


def check_arch_dict(owner: str, arch: Mapping, required: Sequence[str],
                    optional: Sequence[str]) -> None:
    """A custom ``arch`` dict: the required keys present, no other key
    than the required and optional ones, each value of the right kind."""
    valid = list(required) + list(optional)
    missing = [key for key in required if key not in arch]
    if missing:
        raise ValueError(f'{owner}: custom arch {dict(arch)} lacks the keys '
                         f'{missing}; required: {list(required)}, optional: '
                         f'{list(optional)}')
    unknown = [key for key in arch if key not in valid]
    if unknown:
        raise ValueError(
            f'{owner}: custom arch {dict(arch)} has unknown keys {unknown}; '
            f'valid keys: {valid} (other options are constructor '
            f'arguments)')
    for key in valid:
        if key in arch and key in ARCH_CHECKS:
            ARCH_CHECKS[key](f'{owner} arch', key, arch[key])


# ------------------------------------------------------------ init_cfg ----
PRETRAINED_KEYS = ('type', 'checkpoint', 'prefix', 'map_location')


def _is_pretrained(cfg: Mapping) -> bool:
    kind = cfg.get('type')
    if kind == 'Pretrained':
        return True
    try:
        from mmengine.model.weight_init import PretrainedInit
    except ImportError:  # pragma: no cover - mmengine is a dependency
        return False
    return kind is PretrainedInit


def _nested_pretrained(cfg: Mapping) -> bool:
    """Whether an ``override`` inside ``cfg`` asks for ``Pretrained``."""
    override = cfg.get('override')
    if override is None:
        return False
    overrides = [override] if isinstance(override, Mapping) else override
    return any(
        isinstance(item, Mapping) and (
            _is_pretrained(item) or _nested_pretrained(item))
        for item in overrides)


def split_init_cfg(owner: str,
                   init_cfg: Any) -> Tuple[Optional[dict], List[dict]]:
    """The ``Pretrained`` entry of ``init_cfg`` (a dict, a list of dicts or
    None) and the other initialisers.

    The ``Pretrained`` entry is loaded by the package's all-or-nothing
    loader, never by mmengine's (which loads with ``strict=False``), so
    everything that would reach mmengine's loader is refused: a second
    ``Pretrained`` entry, one inside an ``override``, and keys mmengine
    would take that the package does not (``map_location`` is accepted:
    weights are read on the CPU and copied into the model's parameters,
    wherever they are). A ``prefix`` is normalised as mmengine does
    (``'backbone'`` means ``'backbone.'``).

    Raises:
        TypeError: ``init_cfg`` or an entry is not a dict.
        ValueError: An entry as described above.
    """
    if init_cfg is None:
        return None, []
    entries = [init_cfg] if isinstance(init_cfg, Mapping) else init_cfg
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise TypeError(f'{owner}: init_cfg must be a dict, a list of dicts '
                        f'or None, got {_shown(init_cfg)}')
    pretrained, others = [], []
    for entry in entries:
        if not isinstance(entry, Mapping) or 'type' not in entry:
            raise TypeError(f'{owner}: each init_cfg entry must be a dict '
                            f"with a 'type', got {_shown(entry)}")
        if _is_pretrained(entry):
            pretrained.append(entry)
        elif _nested_pretrained(entry):
            raise ValueError(
                f'{owner}: init_cfg {dict(entry)} has a Pretrained '
                f'override, which mmengine would load without checking '
                f"that it fits; give dict(type='Pretrained', "
                f'checkpoint=...) as its own init_cfg entry')
        else:
            others.append(dict(entry))
    if len(pretrained) > 1:
        raise ValueError(f'{owner}: init_cfg has {len(pretrained)} '
                         f'Pretrained entries {pretrained}; give one')
    if not pretrained:
        return None, others
    cfg = dict(pretrained[0])
    unknown = [key for key in cfg if key not in PRETRAINED_KEYS]
    if unknown:
        raise ValueError(f'{owner}: init_cfg Pretrained entry has unknown '
                         f'keys {unknown}; valid keys: '
                         f'{list(PRETRAINED_KEYS)}')
    checkpoint = cfg.get('checkpoint')
    if isinstance(checkpoint, os.PathLike):
        checkpoint = cfg['checkpoint'] = os.fspath(checkpoint)
    if not isinstance(checkpoint, str) or not checkpoint:
        raise ValueError(f'{owner}: init_cfg Pretrained entry needs '
                         f'checkpoint=PATH_URL_OR_HF_HUB_NAME, got '
                         f'{_shown(checkpoint)}')
    prefix = cfg.get('prefix')
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix.strip('.'):
            raise ValueError(f'{owner}: init_cfg Pretrained prefix must be '
                             f"a key prefix such as 'backbone.', got "
                             f'{_shown(prefix)}')
        if not prefix.endswith('.'):
            cfg['prefix'] = prefix + '.'
    return cfg, others
