"""Reading checkpoints safely.

Every checkpoint, pretrained or resumed, is read with
``torch.load(weights_only=True)``: a pickle can only rebuild tensors,
containers and an explicit list of plain-data types, never run code.  The
list (:func:`mixer_backbones.compat.safe_globals`) holds exactly what
mmengine's own checkpoints and the published pretrained files carry;
importing the package registers it with torch (see
:mod:`mixer_backbones.compat`).

Pretrained files may be paths (``~`` expanded), http(s) URLs (downloaded
once into torch's hub cache) or ``hf-hub:`` names; a failed download names
the URL or repository at once, and ``HF_HUB_OFFLINE=1`` keeps both to
their caches. Tensors holding NaN or Inf are refused (:func:`check_finite`),
and :func:`save_checkpoint_file` writes a file whole or not at all.
"""
import hashlib
import http.client
import os
import os.path as osp
import pickle
import re
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Any, Dict, Mapping, Optional

import torch

URL_PREFIXES = ('http://', 'https://')
HF_PREFIX = 'hf-hub:'


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or does not fit the model."""


# Seconds without an answer after which a download gives up.
DOWNLOAD_TIMEOUT = 60
_TRUE_VALUES = ('1', 'on', 'yes', 'true')


def hf_hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access (read at each
    call, so setting it after import counts)."""
    value = os.environ.get('HF_HUB_OFFLINE', '')
    return value.strip().lower() in _TRUE_VALUES


def url_cache_path(url: str) -> str:
    """Where the download of ``url`` is cached (torch's hub cache), whether
    or not it is there yet."""
    # Hub files share names (model.safetensors): key by the URL too.
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    f"{digest}-{osp.basename(url.split('?')[0])}")


def _download(url: str, local: str) -> None:
    """Download ``url`` to ``local`` (through a temporary file, so an
    interrupted download leaves no partial file), or raise
    :class:`CheckpointError` naming the URL."""
    if hf_hub_offline():
        raise CheckpointError(
            f'cannot download checkpoint {url!r}: HF_HUB_OFFLINE is set and '
            f'the file is not in the cache ({local}); download it on a '
            f'machine with internet access and pass its local path, or put '
            f'it at that cache path')
    os.makedirs(osp.dirname(local), exist_ok=True)
    partial = f'{local}.{os.getpid()}.partial'
    request = urllib.request.Request(
        url, headers={'User-Agent': 'mixer_backbones'})
    try:
        with urllib.request.urlopen(
                request, timeout=DOWNLOAD_TIMEOUT) as response:
            total = response.headers.get('Content-Length')
            progress = _progress(total, osp.basename(local))
            with open(partial, 'wb') as out, progress:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    progress.update(len(chunk))
        os.replace(partial, local)
    except urllib.error.HTTPError as err:
        raise CheckpointError(
            f'cannot download checkpoint {url!r}: HTTP {err.code} '
            f'{err.reason} (is the URL right?)') from err
    except (urllib.error.URLError, TimeoutError, ConnectionError,
            http.client.HTTPException) as err:
        reason = getattr(err, 'reason', None) or err
        raise CheckpointError(
            f'cannot download checkpoint {url!r}: {reason} (is this machine '
            f'offline? download the file elsewhere and pass its local '
            f'path, or put it at {local})') from err
    finally:
        if osp.exists(partial):
            os.remove(partial)


def _progress(total: Optional[str], name: str):
    """A byte progress bar on stderr (tqdm, or torch's stand-in for it when
    tqdm is not installed)."""
    from torch.hub import tqdm
    return tqdm(
        total=int(total) if total else None,
        desc=name,
        unit='B',
        unit_scale=True,
        unit_divisor=1024)


def _first_line(err: BaseException) -> str:
    return f'{type(err).__name__}: {err}'.split('\n')[0]


def _hf_hub_download(name: str) -> str:
    """The local path of ``hf-hub:<repo>[:<file>]``, downloaded once into
    the Hugging Face cache.

    With ``HF_HUB_OFFLINE`` set only the cache is looked at. Otherwise one
    request asks the hub for the file first: when it gets no answer the
    cached copy is used, or the error comes at once (the hub's client
    would retry for about half a minute before failing).
    """
    repo, _, filename = name[len(HF_PREFIX):].partition(':')
    filename = filename or 'model.safetensors'

    def failure(why: str) -> CheckpointError:
        return CheckpointError(
            f'cannot get {filename!r} of the Hugging Face hub repository '
            f'{repo!r} ({name!r}): {why}; on a machine without internet '
            f'access, download it elsewhere and pass its local path')

    if not repo:
        raise CheckpointError(f'{name!r}: no repository named; write '
                              f'hf-hub:<owner>/<repo>[:<file>]')
    try:
        import huggingface_hub
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError as err:
        raise failure('hf-hub: names need the huggingface_hub package, '
                      'which is not installed') from err
    offline = hf_hub_offline()
    if not offline:
        try:
            huggingface_hub.get_hf_file_metadata(
                huggingface_hub.hf_hub_url(repo, filename))
        except HfHubHTTPError as err:  # an answer: no such repo or file...
            raise failure(_first_line(err)) from err
        except Exception as err:  # no answer
            cached = huggingface_hub.try_to_load_from_cache(repo, filename)
            if isinstance(cached, str):
                return cached
            raise failure(f'the hub cannot be reached ({_first_line(err)});'
                          f' is this machine offline? (HF_HUB_OFFLINE=1 '
                          f'uses cached files only)') from err
    try:
        return huggingface_hub.hf_hub_download(
            repo, filename, local_files_only=offline)
    except Exception as err:  # the hub's errors have no common base
        raise failure('HF_HUB_OFFLINE is set and it is not in the cache'
                      if offline else _first_line(err)) from err


def resolve_checkpoint_path(filename: str) -> str:
    """A local path for ``filename``: a path (``~`` expanded), an http(s)
    URL (downloaded once into torch's hub cache) or
    ``hf-hub:<repo>[:<file>]``.

    Raises:
        FileNotFoundError: A local path that does not exist.
        IsADirectoryError: A local path that is a directory.
        CheckpointError: A download failed (the message names the URL or
            the repository); with ``HF_HUB_OFFLINE`` set nothing is
            downloaded and only cached files are found.
    """
    filename = os.fspath(filename)
    if filename.startswith(URL_PREFIXES):
        local = url_cache_path(filename)
        if not osp.exists(local):
            _download(filename, local)
        return local
    if filename.startswith(HF_PREFIX):
        return _hf_hub_download(filename)
    path = osp.expanduser(filename)
    shown = repr(filename) if path == filename else f'{filename!r} ({path})'
    if osp.isdir(path):
        inside = sorted(
            name for name in os.listdir(path)
            if name.endswith(('.pth', '.pth.tar', '.bin', '.safetensors')))
        raise IsADirectoryError(
            f'checkpoint {shown} is a directory, not a file; pass a file' +
            (f' in it: {inside[:5]}' if inside else ''))
    if not osp.isfile(path):
        from .release import release_hint
        hint = release_hint(filename)
        raise FileNotFoundError(f'checkpoint file not found: {shown}' +
                                (f'; {hint}' if hint else ''))
    return path


def local_checkpoint_path(filename: str) -> Optional[str]:
    """Where ``filename`` (a path, URL or ``hf-hub:`` name) lies, or will
    be cached, on this machine, without downloading anything; None for an
    ``hf-hub:`` file not in the cache."""
    filename = os.fspath(filename)
    if filename.startswith(URL_PREFIXES):
        return url_cache_path(filename)
    if filename.startswith(HF_PREFIX):
        repo, _, name = filename[len(HF_PREFIX):].partition(':')
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(repo, name or 'model.safetensors')
        except Exception:  # no huggingface_hub, or not a valid repo name
            return None
        return cached if isinstance(cached, str) else None
    return osp.expanduser(filename)


def _new_file_mode(path: str) -> int:
    """The permissions ``open(path, 'w')`` would leave: those of the file
    it replaces, or 0666 less the umask for a new file."""
    if osp.exists(path):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_checkpoint_file(state_dict: Mapping[str, torch.Tensor],
                         path: str) -> None:
    """Write a state dict to ``path``: ``.safetensors`` by the extension,
    otherwise ``torch.save``.

    The file is written next to ``path`` under a temporary name, flushed to
    disk and renamed over ``path``, so ``path`` is never a partial file;
    it gets the permissions a plain ``open`` would give it.
    """
    path = os.fspath(path)
    fd, partial = tempfile.mkstemp(
        dir=osp.dirname(osp.abspath(path)),
        prefix=f'.{osp.basename(path)}.',
        suffix='.partial')
    os.close(fd)
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import save_file
            tensors = {k: v.contiguous() for k, v in state_dict.items()}
            save_file(tensors, partial)
        else:
            torch.save(dict(state_dict), partial)
        with open(partial, 'rb') as written:
            os.fsync(written.fileno())
        os.chmod(partial, _new_file_mode(path))
        os.replace(partial, path)
    finally:
        if osp.exists(partial):
            os.remove(partial)


def load_checkpoint_file(filename: str, map_location: str = 'cpu') -> Any:
    """Read a ``.pth``/``.pth.tar``/``.bin`` or ``.safetensors`` file safely.

    ``filename`` may also be an http(s) URL or an ``hf-hub:`` name (see
    :func:`resolve_checkpoint_path`).

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        IsADirectoryError: ``filename`` is a directory.
        CheckpointError: the file is truncated, corrupt, not a checkpoint,
            or holds objects outside the allowed types (code is never run);
            or its download failed (the URL or repository is named).
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


def check_finite(state_dict: Mapping[str, torch.Tensor],
                 source: str = 'state dict') -> None:
    """Refuse a state dict holding NaN or Inf values.

    Raises:
        CheckpointError: naming the first tensors with non-finite values
            and how many such values each holds.
    """
    bad = []
    for key, value in state_dict.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        # The sum is one pass without a mask, and NaN or Inf make it
        # non-finite; a non-finite sum of finite values (an overflow) is
        # told apart by the exact test.
        if bool(torch.isfinite(value.sum())):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            nan = int(torch.isnan(value).sum())
            bad.append(f'{key} ({nan} NaN, '
                       f'{int((~finite).sum()) - nan} Inf of '
                       f'{value.numel()})')
    if bad:
        raise CheckpointError(
            f'refusing {source!r}: {len(bad)} tensors hold NaN or Inf '
            f'values, first: {", ".join(bad[:5])}; nothing was loaded (is '
            f'it the checkpoint of a diverged run, or damaged?)')


def strip_prefix(state_dict: Mapping[str, torch.Tensor],
                 prefix: str) -> Dict[str, torch.Tensor]:
    """Keep the entries under ``prefix`` with the prefix removed."""
    return {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
