"""What importing ``mixer_backbones`` changes outside the package, in one
place.

Every config of the package imports it (``custom_imports``), so these
apply to our tools and to mmdet's and mmseg's own tools alike:

1. **Checkpoints under torch >= 2.6.** ``torch.load`` defaults to
   ``weights_only=True`` there, and mmengine 0.10's checkpoints (``--resume``,
   the hosts' ``tools/test.py``) carry types that torch refuses by default:
   mmengine's ``HistoryBuffer``, numpy arrays and scalars and
   ``argparse.Namespace``. :func:`register_safe_globals` allows exactly
   those types process-wide (never ``weights_only=False``, which would
   run code from a downloaded file), and makes ``HistoryBuffer`` pickle
   without its table of statistics functions (pickled as ``getattr``
   calls, which no safe unpickler may allow; the table is rebuilt on
   loading anyway).
2. **Process groups at exit.** A gloo process group left to interpreter
   teardown can abort a finished run; :func:`apply` registers
   ``mixer_backbones.engine.shutdown_distributed`` with ``atexit``. (After
   a DDP model that is not enough; our tools end with
   ``engine.end_distributed_process``.)

:func:`apply` is called once by ``mixer_backbones/__init__.py``.
"""
import argparse
import atexit
from typing import Any, List

import numpy as np
import torch

_applied = False


def _numpy_globals() -> List[Any]:
    """The numpy callables and classes needed to unpickle arrays and
    scalars, for numpy 1.x and 2.x."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    dtype_classes = getattr(np, 'dtypes', None)
    if dtype_classes is not None:
        found += [
            getattr(dtype_classes, name) for name in dir(dtype_classes)
            if name.endswith('DType')
        ]
    return found


def safe_globals() -> List[Any]:
    """The non-tensor types a checkpoint may contain."""
    types = _numpy_globals() + [argparse.Namespace]
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        types.append(HistoryBuffer)
    except ImportError:  # pragma: no cover - mmengine is a dependency
        pass
    return types


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer`` state without its statistics methods.

    mmengine pickles the class-wide table of statistics functions into every
    buffer, as ``getattr(HistoryBuffer, 'min')`` calls, which no safe
    unpickler may allow (a ``getattr`` chain reaches any module). The table
    is rebuilt on unpickling anyway (``__setstate__`` registers the default
    methods, and custom ones are registered again when their module is
    imported), so the checkpoint need not carry it.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def register_safe_globals() -> None:
    """Allow mmengine's checkpoint types in ``torch.load(weights_only=True)``
    process-wide (what the runner and the hosts' tools call), and make the
    checkpoints written in this process loadable that way."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(safe_globals())
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # pragma: no cover - mmengine is a dependency
        return
    HistoryBuffer.__getstate__ = _history_buffer_state


def apply() -> None:
    """Apply the changes listed in the module docstring (idempotent)."""
    global _applied
    if _applied:
        return
    from .engine import shutdown_distributed
    register_safe_globals()
    atexit.register(shutdown_distributed)
    _applied = True
