"""Runner hooks every config of the package carries.

* :class:`NeckChannelsCheckHook` refuses a neck whose ``in_channels`` do not
  match the backbone's output channels before anything runs. Without it the
  mismatch surfaces only at the first forward, as a convolution shape error
  deep inside the neck.
* :class:`ThroughputHook` adds images per second and, on a machine without
  GPUs, the process's peak resident memory to the training log (mmengine
  logs GPU memory itself, but nothing on CPU, and no throughput).
* :class:`DeployBackboneHook` (``tools/test.py --deploy``) evaluates with
  the backbone in its inference form.
* :class:`RunStateHook` makes checkpoints atomic, resume exact (random
  states in the checkpoint, data streams seeded per epoch) and SIGTERM or
  SIGUSR1 stop a run with a checkpoint.

Both need only mmengine. ``tools/train.py`` and ``tools/test.py`` run the
same channel check right after building the runner, so the hook matters
for mmdet's and mmseg's own tools.
"""
import resource
from typing import Optional, Sequence

import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from .registry import HOOKS


def check_neck_channels(model: torch.nn.Module) -> None:
    """Raise ``ValueError`` when ``model.neck.in_channels`` differs from the
    channels of the package backbone feeding it; models without a package
    backbone or a neck with ``in_channels`` are left alone."""
    model, backbone = _unwrap(model)
    neck = getattr(model, 'neck', None)
    if backbone is None or neck is None:
        return
    expected = getattr(neck, 'in_channels', None)
    if expected is None:
        return
    if isinstance(expected, int):
        expected = [expected]
    provided = [int(c) for c in backbone.out_channels]
    if [int(c) for c in expected] != provided:
        raise ValueError(
            f'{type(neck).__name__} in_channels={list(expected)} do not '
            f'match the output channels of {type(backbone).__name__} '
            f'(arch {backbone.arch_name!r}, out_indices='
            f'{list(backbone.out_indices)}): {provided}; set '
            f'model.neck.in_channels={provided} or change the backbone\'s '
            f'out_indices')


@HOOKS.register_module()
class NeckChannelsCheckHook(Hook):
    """Run :func:`check_neck_channels` on the runner's model before
    training, validation or testing starts."""
    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        check_neck_channels(runner.model)


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Log ``img_per_s`` (all processes together; images per iteration over
    the mean iteration time of the logger's window) and ``cpu_memory``
    (peak resident MiB of this process) when no GPU is in use.

    It reads the iteration time that mmengine's ``IterTimerHook`` has just
    recorded, so its priority sits between that hook's and the logger's.
    """
    priority = 55  # after IterTimerHook (NORMAL=50), before LoggerHook (60)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        hub = runner.message_hub
        if 'train/time' in hub.log_scalars and data_batch is not None:
            # Over the logger's window, as the logged ``time`` is: a mean of
            # per-iteration rates would overstate throughput when
            # iteration times vary.
            window = getattr(runner.log_processor, 'window_size', 10)
            seconds = hub.get_scalar('train/time').mean(
                window if isinstance(window, int) else 10)
            images = _batch_size(data_batch) * get_world_size()
            if seconds > 0 and images:
                hub.update_scalar('train/img_per_s', images / seconds)
        if not torch.cuda.is_available():
            # ru_maxrss is in KiB on Linux.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            hub.update_scalar('train/cpu_memory', peak / 1024)


def _batch_size(data_batch) -> int:
    inputs = data_batch.get('inputs') if isinstance(data_batch,
                                                    dict) else None
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    if isinstance(inputs, Sequence):
        return len(inputs)
    return 0


@HOOKS.register_module()
class DeployBackboneHook(Hook):
    """Switch the package backbone to its inference form
    (``switch_to_deploy()``, and on the CPU
    :func:`mixer_backbones.ops.cpu.optimize`) once the checkpoint is
    loaded, before testing or validation runs; outputs are unchanged within
    float rounding.
    Refuses a run that also trains, since the deploy form folds training
    parameters away."""

    def before_train(self, runner) -> None:
        raise RuntimeError('DeployBackboneHook is for evaluation only; the '
                           'deploy form cannot be trained')

    def before_val(self, runner) -> None:
        self._deploy(runner)

    def before_test(self, runner) -> None:
        self._deploy(runner)

    @staticmethod
    def _deploy(runner) -> None:
        model, backbone = _unwrap(runner.model)
        if backbone is None:
            raise TypeError(
                f'--deploy needs a mixer_backbones backbone, got '
                f'{type(getattr(model, "backbone", None)).__name__}')
        backbone.eval()
        backbone.switch_to_deploy()  # idempotent
        on_cpu = all(p.device.type == 'cpu' for p in backbone.parameters())
        if on_cpu:
            from .ops import cpu
            cpu.optimize(backbone)
        runner.logger.info(
            f'{type(backbone).__name__}: evaluating with the inference form '
            f'(switch_to_deploy' +
            (', mixer_backbones.ops.cpu.optimize)' if on_cpu else ')'))


def _unwrap(model: torch.nn.Module):
    """``(model without its DDP wrapper, its package backbone or None)``."""
    from .models import BaseDenseBackbone
    if is_model_wrapper(model):
        model = model.module
    backbone = getattr(model, 'backbone', None)
    return model, (backbone
                   if isinstance(backbone, BaseDenseBackbone) else None)


@HOOKS.register_module()
class RunStateHook(Hook):
    """Exact resume, atomic checkpoints and pre-emption for training.

    * Checkpoints written by mmengine's ``CheckpointHook`` to a local
      directory go through a temporary file and a rename
      (:class:`mixer_backbones.runs.AtomicLocalBackend`).
    * Each checkpoint carries, under ``meta['random_states']``, the python,
      numpy and torch generator states of every process at the moment it
      was written, and the sampler's seed; ``--resume`` restores them where
      the uninterrupted run would continue (the next epoch's start, or,
      for iteration-based loops, the next iteration after mmengine has
      replayed the data already trained).
    * The training data's pipeline runs on its own stream, seeded per
      epoch from ``(seed, epoch, rank, worker)`` in whichever process runs
      it (workers, persistent or not, or the main process), so the data's
      randomness does not depend on what the model draws, nor on when
      workers were started. Validation leaves the training's streams as it
      found them.
    * SIGTERM or SIGUSR1 (Slurm's warning before the time limit) makes the
      run finish its current iteration, write ``iter_<N>.pth`` and exit
      with status :data:`mixer_backbones.runs.PREEMPTED_EXIT_CODE` (75);
      ``--resume`` continues from it (mid-epoch too: the batches of the
      epoch already trained are skipped).

    Args:
        signals (Sequence[str]): Signals that stop the run with a
            checkpoint. Defaults to ``('SIGTERM', 'SIGUSR1')``.
    """
    priority = 85  # after the other hooks, before CheckpointHook (90)

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1')):
        self.signals = tuple(signals)
        self._shared = None
        self._snapshot = None  # per-rank states at the last save point
        self._resumed = None  # this rank's states to restore
        self._restore_at = None  # 'epoch' or 'iter'
        self._skip = 0
        self._val_states = None
        self._stop_signal = None
        self._handlers = {}

    # -- set-up -------------------------------------------------------------
    def before_run(self, runner) -> None:
        if not _training(runner) or self._shared is not None:
            return
        from mmengine.hooks import CheckpointHook

        from .runs import ATOMIC_BACKEND
        for hook in runner.hooks:
            if (isinstance(hook, CheckpointHook) and hook.backend_args is None
                    and hook.file_client_args is None
                    and '://' not in str(hook.out_dir or '')):
                hook.backend_args = dict(backend=ATOMIC_BACKEND)
        self._install_pipelines(runner)

    def _install_pipelines(self, runner) -> None:
        import multiprocessing

        from mmengine.dist import get_rank

        from .runs import SeededPipeline, datasets_with_pipelines
        self._shared = multiprocessing.RawArray('q', 2)
        self._shared[0] = int(runner.seed)
        dataloader = runner.train_loop.dataloader
        if getattr(dataloader, 'generator', None) is None:
            # torch draws every new iterator's base seed from this
            # generator, else from the global one: starting the workers
            # (each epoch, or once when persistent) would then shift the
            # model's stream differently in a resumed run.
            dataloader.generator = torch.Generator()
            dataloader.generator.manual_seed(int(runner.seed))
        for dataset in datasets_with_pipelines(dataloader.dataset):
            if not isinstance(dataset.pipeline, SeededPipeline):
                dataset.pipeline = SeededPipeline(dataset.pipeline,
                                                  self._shared, get_rank())

    def before_train(self, runner) -> None:
        import signal
        import threading
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.signals:
            signum = getattr(signal, name)
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        import signal
        self._stop_signal = signum
        # A second signal acts as it would without this hook (a hung run
        # can still be stopped).
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        self._handlers = {}

    def after_train(self, runner) -> None:
        import signal
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    # -- resume -------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not (_training(runner) and getattr(runner, '_resume', False)):
            return
        from mmengine.dist import get_rank, get_world_size
        from mmengine.runner import EpochBasedTrainLoop
        meta = checkpoint.get('meta', {})
        saved = meta.get('random_states')
        if saved is None:
            runner.logger.warning(
                'The checkpoint carries no random states (written without '
                'RunStateHook): the resumed run draws other random numbers '
                'than the uninterrupted one would')
        elif len(saved['states']) != get_world_size():
            runner.logger.warning(
                f"The checkpoint's random states are of "
                f"{len(saved['states'])} processes, this run has "
                f'{get_world_size()}: they are not restored')
        else:
            self._resumed = saved['states'][get_rank()]
            sampler = _sampler(runner.train_loop.dataloader)
            if saved.get('sampler_seed') is not None and hasattr(
                    sampler, 'seed'):
                sampler.seed = saved['sampler_seed']
        loop = runner.train_loop
        self._restore_at = 'iter'
        if isinstance(loop, EpochBasedTrainLoop):
            done = int(meta['iter']) - int(meta['epoch']) * len(
                loop.dataloader)
            if done > 0:
                self._skip = done
            else:
                self._restore_at = 'epoch'

    def before_train_epoch(self, runner) -> None:
        from mmengine.runner import IterBasedTrainLoop
        loop = runner.train_loop
        if self._shared is not None:
            self._shared[0] = int(runner.seed)
            self._shared[1] = int(runner.epoch)
        if isinstance(loop, IterBasedTrainLoop) and self._shared is not None:
            _restart_iterator(loop)
        if self._restore_at == 'epoch':
            self._restore(runner)
        if self._skip:
            self._skip_trained_batches(runner, self._skip)
            self._skip = 0

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self._restore_at == 'iter':
            self._restore(runner)

    def _restore(self, runner) -> None:
        from .runs import set_random_states
        if self._resumed is not None:
            set_random_states(self._resumed)
            runner.logger.info('Random states restored from the checkpoint')
        self._resumed = None
        self._restore_at = None

    @staticmethod
    def _skip_trained_batches(runner, count: int) -> None:
        """Let the epoch's first ``count`` batches, trained before the
        checkpoint was written, go by untrained (their data is drawn, as
        mmengine's iteration-based loop replays it)."""
        loop = runner.train_loop
        runner.logger.info(f'Skipping the {count} batches of epoch '
                           f'{runner.epoch + 1} trained before the '
                           f'checkpoint')
        remaining = [count]

        def run_iter(idx, data_batch):
            if remaining[0] > 0:
                remaining[0] -= 1
                return None
            del loop.run_iter  # back to the class's method
            return loop.run_iter(idx, data_batch)

        loop.run_iter = run_iter

    # -- save points --------------------------------------------------------
    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        stop = self._agreed_stop()
        if stop or _save_due(runner, by_epoch=False):
            self._take_snapshot()
        if stop:
            self._stop(runner, stop)

    def after_train_epoch(self, runner) -> None:
        if _save_due(runner, by_epoch=True):
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        from mmengine.dist import all_gather_object, get_world_size

        from .runs import get_random_states
        states = get_random_states()
        self._snapshot = (all_gather_object(states)
                          if get_world_size() > 1 else [states])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        from .runs import get_random_states
        if not _training(runner):
            return
        states = self._snapshot or [get_random_states()]
        sampler = _sampler(runner.train_loop.dataloader)
        checkpoint.setdefault('meta', {})['random_states'] = dict(
            states=states, sampler_seed=getattr(sampler, 'seed', None))

    def before_val(self, runner) -> None:
        from .runs import get_random_states
        if _training(runner):
            self._val_states = get_random_states()

    def after_val(self, runner) -> None:
        from .runs import set_random_states
        if self._val_states is not None:
            set_random_states(self._val_states)
            self._val_states = None

    # -- pre-emption --------------------------------------------------------
    def _agreed_stop(self) -> int:
        """The stop signal, agreed by every process (the largest number any
        received), or 0."""
        from mmengine.dist import all_reduce, get_world_size
        if get_world_size() == 1:
            return self._stop_signal or 0
        flag = torch.tensor([self._stop_signal or 0])
        all_reduce(flag, op='max')
        return int(flag.item())

    def _stop(self, runner, signum: int) -> None:
        import os.path as osp
        import signal

        from mmengine.dist import barrier, is_main_process

        from .runs import ATOMIC_BACKEND, PREEMPTED_EXIT_CODE, write_atomic
        name = f'iter_{runner.iter + 1}.pth'
        path = osp.join(runner.work_dir, name)
        runner.logger.warning(
            f'{signal.Signals(signum).name} received: saving {path} after '
            f'iteration {runner.iter + 1} and stopping')
        runner.save_checkpoint(
            runner.work_dir,
            name,
            by_epoch=False,
            backend_args=dict(backend=ATOMIC_BACKEND))
        if is_main_process():
            write_atomic(
                osp.join(runner.work_dir, 'last_checkpoint'),
                path.encode())
        barrier()
        runner.logger.warning(
            f'Stopped by {signal.Signals(signum).name} with {path} written; '
            f'exit status {PREEMPTED_EXIT_CODE}. Continue with --resume')
        raise SystemExit(PREEMPTED_EXIT_CODE)


def _training(runner) -> bool:
    from mmengine.runner import BaseLoop
    return isinstance(getattr(runner, '_train_loop', None), BaseLoop)


def _sampler(dataloader):
    sampler = getattr(dataloader, 'sampler', None)
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    if not hasattr(sampler, 'seed') and batch_sampler is not None:
        sampler = getattr(batch_sampler, 'sampler', sampler)
    return sampler


def _save_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` saves at this point (after this
    iteration, or this epoch with ``by_epoch``), by its own rules."""
    from mmengine.hooks import CheckpointHook
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval,
                                      hook.save_begin) or (
                                          hook.save_last
                                          and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(
                runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False


def _restart_iterator(loop) -> None:
    """Give an iteration-based loop a new dataloader iterator, with new
    workers: mmengine starts the first one (and its workers) when it builds
    the loop, before the seed of a resumed run and the data streams are
    set."""
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    dataloader = loop.dataloader
    old = getattr(dataloader, '_iterator', None)
    if old is not None and hasattr(old, '_shutdown_workers'):
        old._shutdown_workers()  # persistent workers: forked too early
        dataloader._iterator = None
    loop.dataloader_iterator = None  # ends the first iterator
    sampler = _sampler(dataloader)
    if hasattr(sampler, '_indices_of_rank'):
        # mmengine's InfiniteSampler keeps one index generator, which the
        # first iterator has started (with the seed of that time) and
        # closes when it ends: start a new one.
        sampler.indices = sampler._indices_of_rank()
    loop.dataloader_iterator = _InfiniteDataloaderIterator(dataloader)
