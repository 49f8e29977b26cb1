"""Write the seeded toy datasets: COCO-format shapes under ``OUT/coco`` and
ADE20K-layout shapes under ``OUT/ade20k`` (see mixer_backbones.toy_data).

    python tools/make_toy_data.py [--out data/toy] [--coco-train 200]
        [--coco-val 50] [--ade-train 100] [--ade-val 20] [--seed 0]
        [--coco-size 320 256] [--ade-size 256 256] [--max-shapes 4]

A dataset that already exists with the same arguments is left as it is.
Use the COCO one by setting a COCO config's ``data_root`` to ``OUT/coco/``
and ``metainfo=dict(classes=TOY_COCO_CLASSES)``, the ADE20K one by setting
an ADE20K config's ``data_root`` to ``OUT/ade20k/``.
"""
import argparse
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # usable before the package is installed
    sys.path.insert(0, ROOT)

from mixer_backbones.toy_data import (  # noqa: E402
    TOY_ADE20K_LABELS, TOY_COCO_CLASSES, make_toy_ade20k, make_toy_coco)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the seeded toy COCO and ADE20K datasets.')
    parser.add_argument(
        '--out',
        default=osp.join('data', 'toy'),
        help='output folder (default: data/toy)')
    parser.add_argument('--coco-train', type=int, default=200)
    parser.add_argument('--coco-val', type=int, default=50)
    parser.add_argument('--ade-train', type=int, default=100)
    parser.add_argument('--ade-val', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--coco-size',
        type=int,
        nargs=2,
        default=(320, 256),
        metavar=('W', 'H'),
        help='COCO image size (default: 320 256)')
    parser.add_argument(
        '--ade-size',
        type=int,
        nargs=2,
        default=(256, 256),
        metavar=('W', 'H'),
        help='ADE20K image size (default: 256 256)')
    parser.add_argument(
        '--max-shapes',
        type=int,
        default=4,
        help='most shapes per image (default: 4)')
    parser.add_argument(
        '--skip-coco', action='store_true', help='do not write OUT/coco')
    parser.add_argument(
        '--skip-ade20k', action='store_true', help='do not write OUT/ade20k')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.skip_coco:
        started = time.time()
        coco = make_toy_coco(
            osp.join(args.out, 'coco'),
            num_train=args.coco_train,
            num_val=args.coco_val,
            image_size=args.coco_size,
            seed=args.seed,
            max_shapes=args.max_shapes)
        print(f"COCO-format toy data in {coco['root']} "
              f'({time.time() - started:.1f} s):\n'
              f"  train: {coco['train_images']} images, "
              f"{coco['train_instances']} instances -> {coco['train_ann']}\n"
              f"  val:   {coco['val_images']} images, "
              f"{coco['val_instances']} instances -> {coco['val_ann']}\n"
              f'  classes: {TOY_COCO_CLASSES}')
    if not args.skip_ade20k:
        started = time.time()
        ade = make_toy_ade20k(
            osp.join(args.out, 'ade20k'),
            num_train=args.ade_train,
            num_val=args.ade_val,
            image_size=args.ade_size,
            seed=args.seed,
            max_shapes=args.max_shapes)
        print(f"ADE20K-layout toy data in {ade['root']} "
              f'({time.time() - started:.1f} s):\n'
              f"  training:   {ade['train_images']} images -> "
              f"{ade['train_img_dir']}, {ade['train_ann_dir']}\n"
              f"  validation: {ade['val_images']} images -> "
              f"{ade['val_img_dir']}, {ade['val_ann_dir']}\n"
              f'  label values (ADE20K numbering, 0 = ignore): '
              f'{TOY_ADE20K_LABELS}')


if __name__ == '__main__':
    main()
