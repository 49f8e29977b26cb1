"""Glue between the command-line tools and mmengine's Runner.

Kept in the package (not in ``tools/``) so that every entry point applies
the same rules: where the work directory goes, what ``--amp`` and
``--resume`` mean, and how a launch without GPUs is made to work.
"""
import atexit
import logging
import os
import os.path as osp
import subprocess
import sys
from typing import Callable, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config name>``, mmdet's and mmseg's convention."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config, merge ``--cfg-options`` and set the launcher and the
    work directory (argument, then config, then the default)."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(path)
    setup_cpu_distributed(cfg)
    return cfg


def enable_amp(cfg: Config) -> None:
    """Train with automatic mixed precision (dynamic loss scaling)."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        return
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``'auto'`` resumes from the work dir's newest complete checkpoint
    (or, when there is none, starts fresh and says so), a path from that
    checkpoint; ``None`` leaves the config as it is. See
    :func:`mixer_backbones.runs.resolve_resume` for what is refused."""
    from .runs import resolve_resume
    if resume is None:
        return
    checkpoint = resolve_resume(cfg.work_dir, resume)
    if checkpoint is None:
        cfg.resume = False
    else:
        cfg.resume = True
        cfg.load_from = checkpoint


def add_run_state_hook(cfg: Config) -> None:
    """Add :class:`mixer_backbones.RunStateHook` (exact resume, atomic
    checkpoints, pre-emption) to a config that lacks it."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(
            str(h.get('type', '')).endswith('RunStateHook') for h in hooks):
        hooks.append(dict(type='mixer_backbones.RunStateHook'))
    cfg.custom_hooks = hooks


def check_amp_device() -> None:
    """Refuse ``--amp`` without a GPU, before anything is built: mmengine's
    ``AmpOptimWrapper`` needs CUDA (or NPU/MLU/MPS) and otherwise fails
    only after the runner, data and model are built."""
    if not torch.cuda.is_available():
        raise SystemExit(
            '--amp: mixed precision training needs a CUDA GPU and none is '
            'visible here (torch.cuda.is_available() is False); train '
            'without --amp on this machine')


def setup_cpu_distributed(cfg: Config) -> None:
    """Make the ``pytorch`` and ``slurm`` launchers work without GPUs.

    mmengine's launchers call ``torch.cuda.set_device`` and wrap the model
    with ``device_ids=[LOCAL_RANK]``, both of which fail without CUDA. When
    no GPU is visible, join the process group with gloo here (mmengine
    then skips its own initialisation) and wrap the model without device
    ids, i.e. CPU DistributedDataParallel. torch's SyncBatchNorm only
    runs on GPUs, so SyncBN layers (mmseg's configs use them) become plain
    BN, with a warning.
    """
    if cfg.launcher not in ('pytorch', 'slurm') or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if _replace_sync_bn(cfg.model):
        print_log(
            'No GPU: SyncBN layers become BN (statistics per process); '
            'torch synchronises batch norms only between GPUs',
            logger='current',
            level=logging.WARNING)
    if not dist.is_initialized():
        if cfg.launcher == 'slurm':
            _environment_from_slurm(cfg.env_cfg.dist_cfg.get('port'))
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _environment_from_slurm(port: Optional[int] = None) -> None:
    """torch's ``env://`` variables from Slurm's, as mmengine's slurm
    launcher derives them: rank and world size from the task, the master
    from the first host of the job (``MASTER_ADDR`` wins when set), the
    port from ``dist_cfg.port``, ``MASTER_PORT`` or 29500."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(
            ['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
            capture_output=True,
            text=True,
            check=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')


def _replace_sync_bn(node) -> bool:
    """Turn every ``type='SyncBN'`` in a model config into ``'BN'``."""
    found = False
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            found = True
        for value in node.values():
            found = _replace_sync_bn(value) or found
    elif isinstance(node, (list, tuple)):
        for value in node:
            found = _replace_sync_bn(value) or found
    return found


def build_runner(cfg: Config):
    """The runner the config asks for (``runner_type``) or mmengine's."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .hooks import check_neck_channels
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    # Refuse a neck that does not fit now, not at the first forward.
    check_neck_channels(runner.model)
    return runner


def keep_freed_memory(cpu_only: bool = True) -> bool:
    """Make glibc's malloc keep freed memory for reuse in this process.

    By default glibc hands each freed multi-megabyte tensor back to the
    kernel and maps fresh pages for the next one, which the kernel then
    faults in and zeroes on first touch (docs/benchmark.md has the
    measured cost). This sets ``M_MMAP_THRESHOLD`` (1 GiB: smaller
    blocks come from the heap) and ``M_TRIM_THRESHOLD`` (the heap is never
    trimmed), so the process keeps its peak host memory, as PyTorch's GPU
    caching allocator does on the device.

    Our tools call it; ``MIXER_MALLOC_TUNING=0`` leaves malloc alone. The
    same can be had in any process with the environment variables
    ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647``.

    Args:
        cpu_only (bool): Do nothing on a machine with a GPU, where the
            model's tensors are not in host memory. Defaults to True.

    Returns:
        bool: Whether the settings were applied (glibc only).
    """
    import ctypes
    import platform
    if os.environ.get('MIXER_MALLOC_TUNING', '1') == '0' or (
            cpu_only and torch.cuda.is_available()):
        return False
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = ctypes.CDLL(None).mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    # Both together: setting either turns off glibc's adaptive
    # thresholds, and a trim threshold alone would leave every block
    # over 128 KiB mapped and unmapped (far worse).
    applied = (mallopt(m_mmap_threshold, 1 << 30) == 1
               and mallopt(m_trim_threshold, 2**31 - 1) == 1)
    if applied:
        print_log(
            'malloc keeps freed memory for reuse (no page faults on '
            'every new tensor); MIXER_MALLOC_TUNING=0 to turn off',
            logger='current',
            level=logging.INFO)
    return applied


# Whether this process has been in a process group (see
# end_distributed_process).
_left_process_group = False


def shutdown_distributed() -> None:
    """Leave the process group, if any, before the interpreter exits.

    mmengine never destroys it; a gloo group left to the interpreter's
    teardown can abort the process after its work is done ("terminate
    called without an active exception"), failing a finished run. After
    a ``DistributedDataParallel`` model this is not enough: see
    :func:`end_distributed_process`.
    """
    global _left_process_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _left_process_group = True


def end_distributed_process(status: int = 0) -> None:
    """End a finished distributed run's process with exit ``status``,
    without interpreter teardown; nothing happens outside a distributed
    run.

    Once a model has been wrapped in ``DistributedDataParallel``, torch
    keeps the gloo backend alive after ``destroy_process_group`` (DDP's
    reducer holds it from C++), so its worker threads outlive the group. A
    worker still releasing the last reference to a collective's
    Python-owned tensors when the interpreter starts its teardown cannot
    take the GIL and aborts the process ("terminate called without an
    active exception", SIGABRT) after the run has finished and reported,
    and the launcher fails the job: about 1 in 13 runs of
    ``tools/dist_test.sh`` with 2 CPU processes (torch 2.14.1). So the
    tools end such a process here: the exit handlers run (the process
    group is destroyed by one of them) with the interpreter intact, the
    log handlers and streams are flushed, and ``os._exit`` skips the
    teardown. The runner has closed its visualizer and log files in its
    ``after_run`` hooks already. Call it after a run that succeeded, or
    that stopped on purpose with a status (a pre-empted training's 75,
    which ``tools/slurm_train.sh`` requeues on): :func:`run_tool_main`.
    """
    if not (_left_process_group or
            (dist.is_available() and dist.is_initialized())):
        return
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_tool_main(main: Callable[[], object]) -> None:
    """Run a tool's ``main()`` and end its process through
    :func:`end_distributed_process`: with status 0 when it returns, with
    its status when it stops with ``SystemExit(int)``. Any other exception
    propagates (the launcher reports it)."""
    try:
        main()
    except SystemExit as stop:
        if isinstance(stop.code, int):
            end_distributed_process(stop.code)
        raise
    end_distributed_process(0)


def fetch_pretrained(cfg: Config) -> None:
    """Fetch (or find in its cache) the backbone's pretrained checkpoint
    before anything is created, so that a missing file or an unreachable
    URL stops the run with a message naming it, before the work dir, the
    lock or the runner exist."""
    from .checkpoint import CheckpointError, resolve_checkpoint_path
    init = cfg.get('model', {}).get('backbone', {}).get('init_cfg')
    entries = init if isinstance(init, (list, tuple)) else [init]
    for entry in entries:
        if (isinstance(entry, dict) and entry.get('type') == 'Pretrained'
                and entry.get('checkpoint')):
            try:
                resolve_checkpoint_path(entry['checkpoint'])
            except (CheckpointError, OSError) as err:
                raise SystemExit(f'the backbone\'s pretrained weights: '
                                 f'{err}') from None
