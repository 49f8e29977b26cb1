"""Evaluate a checkpoint with any mixer_backbones config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--deploy]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse

from mmengine.config import DictAction
from torch.distributed.elastic.multiprocessing.errors import record

from mixer_backbones.engine import (build_runner, keep_freed_memory,
                                    load_config, run_tool_main,
                                    shutdown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--deploy',
        action='store_true',
        help="evaluate with the backbone's inference form "
        '(switch_to_deploy(); same outputs within float rounding)')
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
    cfg.load_from = args.checkpoint
    if args.deploy:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='mixer_backbones.DeployBackboneHook')
        ]
    try:
        return build_runner(cfg).test()
    finally:
        shutdown_distributed()


if __name__ == '__main__':
    # A finished distributed run must not abort at exit: see
    # mixer_backbones.engine.end_distributed_process.
    run_tool_main(main)
