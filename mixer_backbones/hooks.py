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
