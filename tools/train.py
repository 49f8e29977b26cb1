"""Train a detector or segmentor from any mixer_backbones config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]

Exit status 75: stopped by SIGTERM or SIGUSR1 after writing a checkpoint
(pre-emption, a Slurm time limit); run again with --resume to continue.
"""
import argparse

from mmengine.config import DictAction
from torch.distributed.elastic.multiprocessing.errors import record

from mixer_backbones.engine import (add_run_state_hook, build_runner,
                                    check_amp_device, enable_amp,
                                    fetch_pretrained, keep_freed_memory,
                                    load_config, run_tool_main, set_resume,
                                    shutdown_distributed)
from mixer_backbones.runs import WorkDirLock, launch_rank


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from CKPT, or without a value from the work dir\'s '
        'newest complete checkpoint (starting fresh, with a message, when '
        'there is none)')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


# Under torchrun, a failing process's own exception and traceback are
# written for the launcher, which prints them in its failure summary.
@record
def main(argv=None):
    args = parse_args(argv)
    if args.amp:
        check_amp_device()
    keep_freed_memory()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)
    if args.amp:
        enable_amp(cfg)
    add_run_state_hook(cfg)
    # A missing or unreachable checkpoint stops here, before the work dir.
    fetch_pretrained(cfg)
    # One training per work dir; in distributed runs rank 0 holds the lock
    # (a refusal there ends the others through the launcher).
    lock = WorkDirLock(cfg.work_dir)
    try:
        if launch_rank(args.launcher) == 0:
            lock.acquire()
        set_resume(cfg, args.resume)
        build_runner(cfg).train()
    finally:
        lock.release()
        shutdown_distributed()


if __name__ == '__main__':
    # A finished distributed run must not abort at exit: see
    # mixer_backbones.engine.end_distributed_process.
    run_tool_main(main)
