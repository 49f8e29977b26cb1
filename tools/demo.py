"""The demo: train and evaluate a PoolFormer-S12 RetinaNet on toy data, on
whatever machine this is (about 10 minutes on 2 CPU cores).

1. writes a small COCO-format dataset of shapes (seeded, under data/toy);
2. evaluates the untrained detector with the real COCO metric (the floor);
3. trains it from scratch with mmengine's Runner, logging progress;
4. evaluates it again and prints the numbers, checkpoint and log paths.

    python tools/demo.py [--work-dir DIR] [--max-iters N] [--data-root DIR]
"""
import argparse
import os
import os.path as osp
import shlex
import sys
import time

from mixer_backbones.engine import (build_runner, keep_freed_memory,
                                    load_config)
from mixer_backbones.runs import WorkDirLock
from mixer_backbones.toy_data import make_toy_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo',
                  'retinanet_poolformer-s12_fpn_300i_toy-coco.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'toy'))
    parser.add_argument(
        '--max-iters', type=int, help='training iterations (config: 300)')
    return parser.parse_args(argv)


def banner(text: str) -> None:
    print(f'\n==> {text}', flush=True)


def box_map(metrics: dict) -> float:
    return metrics['coco/bbox_mAP']


def evaluate_again_command(checkpoint: str, data_root: str,
                           data: dict) -> str:
    """The command that evaluates the demo's checkpoint again, runnable as
    printed: from the repository root (``cd`` to it first when elsewhere),
    with this interpreter (``.venv/bin/python`` under ``make demo``)."""
    python = sys.executable
    if osp.commonpath([osp.abspath(python), ROOT]) == ROOT:
        python = osp.relpath(python, ROOT)
    again = ' '.join(
        shlex.quote(part) for part in (python, 'tools/test.py',
                                       osp.relpath(CONFIG, ROOT), checkpoint))
    if osp.realpath(os.getcwd()) != osp.realpath(ROOT):
        again = f'cd {shlex.quote(ROOT)} && {again}'
    if osp.abspath(data_root) != osp.join(ROOT, 'data', 'toy'):
        again += (f' --cfg-options test_dataloader.dataset.data_root='
                  f"{data['root']}/ test_evaluator.ann_file={data['val_ann']}")
    return again


def main(argv=None):
    args = parse_args(argv)
    keep_freed_memory()
    started = time.time()

    banner(f'1/4 toy COCO-format data under {args.data_root}/coco')
    data = make_toy_coco(osp.join(args.data_root, 'coco'))
    print(data)

    options = dict(
        train_dataloader=dict(dataset=dict(data_root=data['root'] + '/')),
        val_dataloader=dict(dataset=dict(data_root=data['root'] + '/')),
        test_dataloader=dict(dataset=dict(data_root=data['root'] + '/')),
        val_evaluator=dict(ann_file=data['val_ann']),
        test_evaluator=dict(ann_file=data['val_ann']))
    if args.max_iters:
        options['train_cfg'] = dict(
            max_iters=args.max_iters, val_interval=args.max_iters)
        options['default_hooks'] = dict(
            checkpoint=dict(interval=args.max_iters))
    cfg = load_config(CONFIG, options, args.work_dir)

    # One demo per work dir (a lock left by a killed demo is taken over).
    lock = WorkDirLock(cfg.work_dir).acquire()

    banner('2/4 evaluating the untrained detector (the floor)')
    runner = build_runner(cfg)
    untrained = runner.test()

    banner(f'3/4 training for {cfg.train_cfg.max_iters} iterations '
           f'(progress every {cfg.default_hooks.logger.interval})')
    runner.train()

    banner('4/4 evaluating the trained detector')
    trained = runner.test()
    lock.release()

    checkpoint = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    again = evaluate_again_command(checkpoint, args.data_root, data)
    minutes = (time.time() - started) / 60
    print(f'''
==> Demo finished in {minutes:.1f} minutes
    COCO box mAP    untrained {box_map(untrained):.3f}  ->  trained {box_map(trained):.3f}
    COCO mAP@0.5    untrained {untrained['coco/bbox_mAP_50']:.3f}  ->  trained {trained['coco/bbox_mAP_50']:.3f}
    checkpoint      {checkpoint}
    logs            {osp.join(cfg.work_dir, runner.timestamp)}
    evaluate again: {again}
''')  # noqa: E501
    return dict(untrained=untrained, trained=trained)


if __name__ == '__main__':
    main()
