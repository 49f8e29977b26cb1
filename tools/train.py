"""Train a detector or segmentor from any mixer_backbones config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse

from mmengine.config import DictAction
from torch.distributed.elastic.multiprocessing.errors import record

from mixer_backbones.engine import (build_runner, enable_amp,
                                    keep_freed_memory, load_config,
                                    set_resume, shutdown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir')
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
    keep_freed_memory()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)
    if args.amp:
        enable_amp(cfg)
    set_resume(cfg, args.resume)
    try:
        build_runner(cfg).train()
    finally:
        shutdown_distributed()


if __name__ == '__main__':
    main()
