"""Run management for training: nothing happens silently.

* :class:`WorkDirLock`: one training per work directory; a second one
  refuses to start and names the first, a lock left by a killed run is
  taken over.
* :func:`resolve_resume`: ``--resume`` resumes from the newest complete
  checkpoint of the work directory (by the iteration recorded in it), says
  so when there is nothing to resume, and refuses a ``last_checkpoint``
  that points outside the work directory.
* :class:`AtomicLocalBackend`: checkpoints are written to a temporary file
  in the same directory and renamed, so a kill at any moment leaves either
  the previous or the new file complete.
* Random streams: the states of python's, numpy's and torch's generators
  (:func:`get_random_states`, :func:`set_random_states`) and the data
  pipeline's own stream (:class:`SeededPipeline`), seeded per epoch from
  ``(seed, epoch, rank, worker)``; :class:`mixer_backbones.RunStateHook`
  puts them together.
"""
import io
import json
import logging
import os
import os.path as osp
import random
import signal
import socket
import time
import zipfile
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

#: Exit status of a training stopped by SIGTERM or SIGUSR1 after writing a
#: checkpoint (``EX_TEMPFAIL`` of sysexits.h: try again later, i.e.
#: requeue and resume).
PREEMPTED_EXIT_CODE = 75

ATOMIC_BACKEND = 'mixer_backbones_atomic'
LOCK_NAME = 'train.lock'


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def launch_rank(launcher: str = 'none') -> int:
    """This process's global rank as the launcher set it in the environment
    (before any process group exists); 0 without a launcher."""
    if launcher == 'none':
        return 0
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if name in os.environ:
            return int(os.environ[name])
    return 0


# --------------------------------------------------------------------------
# One training per work directory
# --------------------------------------------------------------------------
def _process_start(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None
    when it cannot be read (no such process, or no /proc)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            # The command name (field 2) may hold spaces: split after it.
            return f.read().rpartition(')')[2].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (killed, not yet reaped: a killed
    training's worker in a container whose init reaps nothing) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rpartition(')')[2].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


class WorkDirLock:
    """A lock file (``<work_dir>/train.lock``) held while a training runs.

    It records the holder's pid, host and start time. A second
    :meth:`acquire` fails with a ``RuntimeError`` naming them, unless the
    holder is gone: a lock of this host whose pid no longer runs (or runs
    another program, found by its start time) is stale and taken over with
    a warning. A lock of another host cannot be checked from here; the
    message says how to remove it. In distributed runs only rank 0 takes
    the lock.

    Args:
        work_dir (str): The work directory (created if missing).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self.held = False

    def _record(self) -> dict:
        return dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            proc_start=_process_start(os.getpid()))

    def holder(self) -> Optional[dict]:
        """The recorded holder, or None when there is no readable lock."""
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:
            # Unreadable: a holder killed between creating and writing it.
            return time.time() - osp.getmtime(self.path) > 60
        if holder.get('host') != socket.gethostname():
            return False
        pid = int(holder.get('pid', -1))
        if pid == os.getpid() or not _pid_alive(pid):
            return True
        # The pid runs, but it may be another program that got the pid.
        recorded = holder.get('proc_start')
        return recorded is not None and _process_start(pid) != recorded

    def acquire(self) -> 'WorkDirLock':
        os.makedirs(self.work_dir, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released meanwhile
                if not self._stale(holder):
                    raise RuntimeError(self._busy_message(holder))
                _log(
                    f'{self.path}: taking over the stale lock of '
                    f'{self._describe(holder)}, which no longer runs',
                    logging.WARNING)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump(self._record(), f)
            self.held = True
            return self
        raise RuntimeError(f'could not take the lock {self.path}')

    def release(self) -> None:
        if not self.held:
            return
        holder = self.holder()
        if holder and holder.get('pid') == os.getpid() and holder.get(
                'host') == socket.gethostname():
            os.remove(self.path)
        self.held = False

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _describe(holder: dict) -> str:
        if not holder:
            return 'an unknown process (unreadable lock)'
        return (f"pid {holder.get('pid')} on host {holder.get('host')}, "
                f"started {holder.get('started')}")

    def _busy_message(self, holder: dict) -> str:
        text = (f'{self.work_dir} is in use by another training: '
                f'{self._describe(holder)} holds {self.path}. Two trainings '
                f'in one work dir overwrite each other\'s checkpoints; use '
                f'another --work-dir')
        if holder and holder.get('host') != socket.gethostname():
            text += (', or, if that process no longer runs, delete '
                     f'{self.path}')
        return text


# --------------------------------------------------------------------------
# Checkpoints: complete or absent, and which one to resume from
# --------------------------------------------------------------------------
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing through a temporary file in
    the target's directory that is flushed to disk and then renamed over
    the target: readers see the previous file or the new one, complete,
    never a partial one."""

    def put(self, obj: bytes, filepath) -> None:
        write_atomic(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        write_atomic(filepath, obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``.<name>.tmp-<pid>`` beside it
    and ``os.replace``; the temporary file is removed on any failure."""
    path = str(path)
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint_atomic(checkpoint: dict, path: str) -> None:
    """``torch.save`` to ``path`` through :func:`write_atomic`."""
    with io.BytesIO() as buffer:
        torch.save(checkpoint, buffer)
        write_atomic(path, buffer.getvalue())


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a complete checkpoint file, or None when it is
    one (torch's zip format with its central directory, which is written
    last: a truncated file has none)."""
    if not osp.exists(path):
        return 'no such file'
    if osp.isdir(path):
        return 'a directory, not a checkpoint file'
    if not zipfile.is_zipfile(path):
        return ('not a complete checkpoint (truncated or not a torch '
                'file: a save interrupted before checkpoints were written '
                'atomically?)')
    return None


def _checkpoint_position(path: str) -> Optional[tuple]:
    """``(iter, epoch)`` recorded in the checkpoint's meta, or None."""
    if checkpoint_problem(path) is not None:
        return None
    try:
        checkpoint = torch.load(
            path, map_location='cpu', weights_only=True, mmap=True)
        meta = checkpoint['meta']
        return int(meta['iter']), int(meta.get('epoch', 0))
    except Exception:  # noqa: BLE001 - anything unreadable is skipped
        return None


def newest_checkpoint(work_dir: str) -> Optional[str]:
    """The complete ``*.pth`` of ``work_dir`` with the highest recorded
    iteration (then epoch); file names and times do not count."""
    best, best_position = None, None
    for name in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, name)
        if name.startswith('.') or not name.endswith('.pth'):
            continue
        position = _checkpoint_position(path)
        if position is not None and (best_position is None
                                     or position > best_position):
            best, best_position = path, position
    return best


def _inside(path: str, directory: str) -> bool:
    path, directory = osp.realpath(path), osp.realpath(directory)
    return osp.commonpath([path, directory]) == directory


def resolve_resume(work_dir: str, resume: Optional[str]) -> Optional[str]:
    """The checkpoint ``--resume`` should resume from.

    Args:
        work_dir (str): The run's work directory.
        resume (str, optional): ``'auto'`` for the work dir's latest
            checkpoint, or a checkpoint path.

    Returns:
        str or None: The checkpoint, or None when ``'auto'`` finds none
        (logged: the run starts fresh).

    Raises:
        FileNotFoundError: An explicit checkpoint that does not exist.
        ValueError: An explicit checkpoint that is incomplete, or a
            ``last_checkpoint`` pointing outside the work dir.
    """
    if resume is None:
        return None
    if resume != 'auto':
        path = osp.expanduser(resume)
        problem = checkpoint_problem(path)
        if problem == 'no such file':
            raise FileNotFoundError(f'--resume {resume}: no such file')
        if problem is not None:
            raise ValueError(f'--resume {resume}: {problem}; resume from '
                             f'another checkpoint')
        return path
    marker = osp.join(work_dir, 'last_checkpoint')
    recorded = None
    if osp.isfile(marker):
        with open(marker) as f:
            recorded = f.read().strip() or None
    if recorded is not None:
        if not osp.isabs(recorded) and not osp.exists(recorded):
            recorded = osp.join(work_dir, recorded)
        if not _inside(recorded, work_dir):
            local = osp.join(work_dir, osp.basename(recorded))
            fix = (f'--resume {local} to resume from this work dir\'s copy'
                   if osp.exists(local) else
                   '--resume <checkpoint> to name the checkpoint')
            raise ValueError(
                f'{marker} points to {recorded}, outside the work dir '
                f'{work_dir} (a copied work dir?): resuming would continue '
                f'another run\'s checkpoint. Use {fix}, or delete '
                f'{marker} to resume from the newest checkpoint here')
        problem = checkpoint_problem(recorded)
        if problem is None:
            return recorded
        reason = f'{marker} names {recorded}: {problem}'
    else:
        reason = f'no {marker}'
    found = newest_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if found is None:
        _log(f'--resume: nothing to resume in {work_dir} ({reason}), '
             f'starting fresh')
        return None
    _log(f'--resume: {reason}; resuming from {found}, the complete '
         f'checkpoint with the highest recorded iteration',
         logging.WARNING)
    return found


# --------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------
def get_random_states(cuda: bool = True) -> dict:
    """python's, numpy's and torch's (CPU and, with ``cuda``, CUDA)
    generator states, as plain types and tensors (loadable with
    ``weights_only=True``)."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    states = dict(
        python=(version, list(keys), gauss),
        numpy=(kind, torch.from_numpy(np_keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached)),
        torch=torch.get_rng_state())
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`get_random_states` returned."""
    version, keys, gauss = states['python']
    random.setstate((version, tuple(keys), gauss))
    kind, np_keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((kind, np.asarray(np_keys, dtype=np.uint32), pos,
                         has_gauss, cached))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def seed_cpu_streams(seed: int, *key: int) -> None:
    """Seed python's, numpy's and torch's CPU generators from ``seed`` and
    ``key`` (e.g. epoch, rank, worker) through numpy's SeedSequence, so
    that neighbouring keys give unrelated streams."""
    entropy = [int(seed) & (2**63 - 1)] + [int(k) + 1 for k in key]
    words = np.random.SeedSequence(entropy).generate_state(4, np.uint64)
    random.seed(int(words[0]))
    np.random.seed(int(words[1]) & 0xFFFFFFFF)
    torch.default_generator.manual_seed(int(words[2]) & (2**63 - 1))


class SeededPipeline:
    """A dataset's pipeline run on its own random stream.

    The stream is seeded from ``(seed, epoch, rank, worker)`` at the first
    sample of every epoch in every process that runs the pipeline
    (dataloader workers, persistent or not, or the main process with
    ``num_workers=0``); seed and epoch are read from ``shared``, shared
    memory the training process sets before each epoch. In the main
    process the stream is swapped in and out around each call, so the
    data's randomness and the model's never interleave.

    Args:
        pipeline: The dataset's pipeline (a callable).
        shared: A ``multiprocessing`` array ``[seed, epoch]``.
        rank (int): The process's global rank.
    """

    def __init__(self, pipeline, shared, rank: int) -> None:
        self.pipeline = pipeline
        self.shared = shared
        self.rank = rank
        self._key = None
        self._states = None

    def __call__(self, results):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        key = (self.shared[0], self.shared[1], self.rank, worker)
        outside = get_random_states(cuda=False)
        if key != self._key:
            if worker >= 0 and self._key is None:
                _ignore_stop_signals()
            seed_cpu_streams(*key)
            self._key = key
        else:
            set_random_states(self._states)
        try:
            return self.pipeline(results)
        finally:
            self._states = get_random_states(cuda=False)
            set_random_states(outside)

    def __getattr__(self, name):
        if name == 'pipeline':  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def __repr__(self) -> str:
        return f'SeededPipeline({self.pipeline!r})'


def _ignore_stop_signals() -> None:
    """In a dataloader worker: leave SIGUSR1 (Slurm's warning before the
    time limit, sent to every process of a step) to the training process,
    which stops cleanly and ends its workers itself. SIGTERM keeps its
    default: it is how the workers are ended at exit."""
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass


def datasets_with_pipelines(dataset) -> List:
    """``dataset`` and the datasets it wraps (concatenated, repeated,
    class-balanced) that have a ``pipeline``."""
    found, todo = [], [dataset]
    while todo:
        node = todo.pop()
        if hasattr(node, 'pipeline') and callable(node.pipeline):
            found.append(node)
        inner = getattr(node, 'datasets', None)
        if isinstance(inner, Sequence):
            todo.extend(inner)
        if getattr(node, 'dataset', None) is not None:
            todo.append(node.dataset)
    return found
