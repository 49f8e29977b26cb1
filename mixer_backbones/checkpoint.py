"""Reading checkpoints safely.

Every checkpoint, pretrained or resumed, is read with
``torch.load(weights_only=True)``: a pickle can only rebuild tensors,
containers and an explicit list of plain-data types, never run code.  The
list (:func:`mixer_backbones.compat.safe_globals`) holds exactly what
mmengine's own checkpoints and the published pretrained files carry;
importing the package registers it with torch (see
:mod:`mixer_backbones.compat`).
"""
import hashlib
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Optional

import torch

URL_PREFIXES = ('http://', 'https://')
HF_PREFIX = 'hf-hub:'


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or does not fit the model."""


def resolve_checkpoint_path(filename: str) -> str:
    """A local path for ``filename``: a path, an http(s) URL (downloaded
    once into torch's hub cache) or ``hf-hub:<repo>[:<file>]``."""
    filename = os.fspath(filename)
    if filename.startswith(URL_PREFIXES):
        cache = osp.join(torch.hub.get_dir(), 'checkpoints')
        os.makedirs(cache, exist_ok=True)
        # Hub files share names (model.safetensors): key by the URL too.
        digest = hashlib.sha256(filename.encode()).hexdigest()[:10]
        local = osp.join(cache,
                         f"{digest}-{osp.basename(filename.split('?')[0])}")
        if not osp.exists(local):
            torch.hub.download_url_to_file(filename, local, progress=True)
        return local
    if filename.startswith(HF_PREFIX):
        from huggingface_hub import hf_hub_download
        repo, _, name = filename[len(HF_PREFIX):].partition(':')
        return hf_hub_download(repo, name or 'model.safetensors')
    if not osp.isfile(filename):
        from .release import release_hint
        hint = release_hint(filename)
        raise FileNotFoundError(f'checkpoint file not found: {filename!r}' +
                                (f'; {hint}' if hint else ''))
    return filename


def load_checkpoint_file(filename: str, map_location: str = 'cpu') -> Any:
    """Read a ``.pth``/``.pth.tar``/``.bin`` or ``.safetensors`` file safely.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CheckpointError: the file is truncated, corrupt, not a checkpoint,
            or holds objects outside the allowed types (code is never run).
    """
    path = resolve_checkpoint_path(filename)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location))
        except Exception as err:
            raise CheckpointError(f'cannot read safetensors checkpoint '
                                  f'{filename!r}: {err}') from err
    # The allowed types are registered process-wide when the package is
    # imported (torch's ``safe_globals`` context manager would unregister
    # them on exit, also for the runner's later loads).
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = _blocked_global(str(err))
        if blocked is None:  # not a pickle of ours to judge: bad bytes
            detail = re.search(r'Unsupported operand \S+', str(err))
            raise CheckpointError(
                f'cannot read checkpoint {filename!r} (truncated or '
                f'corrupt?): not a valid pickle ('
                f'{detail.group(0) if detail else "unreadable data"})'
            ) from err
        raise CheckpointError(
            f'refusing to load {filename!r}: it holds {blocked}, outside '
            f'the types a checkpoint needs (tensors, containers, numpy '
            f'data, mmengine HistoryBuffer); unpickling it could run code, '
            f'so nothing was unpickled') from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError) as err:
        raise CheckpointError(
            f'cannot read checkpoint {filename!r} (truncated or corrupt?): '
            f'{type(err).__name__}: {err}') from err


def _blocked_global(message: str) -> Optional[str]:
    """The object torch's weights-only unpickler refused, as named in its
    message (``GLOBAL posix.system``), or None when the refusal was about
    malformed data rather than a forbidden object."""
    match = re.search(r'(?:GLOBAL|global) ([\w.]+)', message)
    if match:
        return match.group(1)
    if 'Unsupported operand' in message:
        return None
    return 'an object of a type that is not allowed'


def extract_state_dict(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: unwraps ``state_dict``,
    ``model`` or ``module`` entries and a DataParallel ``module.`` prefix."""
    state = checkpoint
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state, Mapping) and key in state and isinstance(
                state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f'checkpoint holds a {type(state).__name__}, not a state dict')
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError('checkpoint holds no tensors; top-level keys: '
                              f'{list(state)[:10]}')
    if all(k.startswith('module.') for k in tensors):
        tensors = {k[len('module.'):]: v for k, v in tensors.items()}
    return tensors


def strip_prefix(state_dict: Mapping[str, torch.Tensor],
                 prefix: str) -> Dict[str, torch.Tensor]:
    """Keep the entries under ``prefix`` with the prefix removed."""
    return {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
