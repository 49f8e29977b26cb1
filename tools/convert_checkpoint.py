"""Convert a published checkpoint to this package's layout, offline.

Runs exactly the conversion that ``init_cfg=dict(type='Pretrained', ...)``
runs at load time, so a converted file and an original load the same.

    python tools/convert_checkpoint.py poolformer poolformer_s12.pth.tar \\
        poolformer_s12_mixer.pth [--arch s12] [--prefix backbone.]

The output is a plain state dict (``.pth``) or a ``.safetensors`` file,
chosen by the output's extension. With ``--arch`` the result is checked
against that arch (and refused if it does not fit) before it is written.

``--whole-model CONFIG`` converts a whole released detector or segmentor
of the original repositories (mmdet 2.x / mmseg 0.x files: backbone, neck
and heads; see :mod:`mixer_backbones.release`) for the model CONFIG
builds, checks every key and shape against that model, and writes an
mmengine checkpoint (``{'state_dict', 'meta'}``) that ``tools/test.py
CONFIG OUT.pth`` evaluates:

    python tools/convert_checkpoint.py efficientformer \\
        mask_rcnn_efficientformer_l1.pth converted.pth \\
        --whole-model \\
        configs/efficientformer/mask-rcnn_efficientformer-l1_fpn_1x_coco.py

An existing output is replaced only with ``--force``, and never when it is
the input itself; the file is written under a temporary name and renamed,
with the permissions a new file usually gets (0666 less the umask).
"""
import argparse
import os.path as osp

from mixer_backbones.checkpoint import (local_checkpoint_path,
                                        save_checkpoint_file)
from mixer_backbones.models import FAMILIES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('family', choices=sorted(FAMILIES))
    parser.add_argument('src', help='checkpoint file, URL or hf-hub: name')
    parser.add_argument('dst', help='output .pth or .safetensors')
    parser.add_argument('--arch', help='check the result against this arch')
    parser.add_argument(
        '--prefix', help="keep only keys under this prefix ('backbone.')")
    parser.add_argument(
        '--whole-model',
        metavar='CONFIG',
        help='convert a whole released detector/segmentor for the model '
        'this config builds')
    parser.add_argument(
        '--force',
        action='store_true',
        help='replace an existing output (never the input)')
    return parser.parse_args(argv)


def convert_whole_model(args, dst: str) -> None:
    """The ``--whole-model`` branch: convert, check against the config's
    model, write an mmengine checkpoint of exactly the model's keys."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mixer_backbones.checkpoint import (extract_state_dict,
                                            load_checkpoint_file)
    from mixer_backbones.release import check_against_model, convert_release
    if args.arch or args.prefix:
        raise SystemExit('--whole-model takes the arch and the prefixes '
                         'from the config and the file; drop --arch and '
                         '--prefix')
    if dst.endswith('.safetensors'):
        raise SystemExit('--whole-model writes an mmengine checkpoint: give '
                         'an output path ending in .pth')
    state = extract_state_dict(load_checkpoint_file(args.src))
    converted, info = convert_release(state, args.family)
    cfg = Config.fromfile(args.whole_model)
    cfg.model.backbone.init_cfg = None  # the weights come from the file
    scope = cfg.get('default_scope', 'mmdet')
    registry = __import__(f'{scope}.registry', fromlist=['MODELS'])
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.MODELS.build(cfg.model)
    check = check_against_model(converted, model)
    own = model.state_dict()
    kept = {k: v for k, v in converted.items() if k in own}
    model.load_state_dict(kept, strict=True)  # everything fits
    save_checkpoint_file(
        dict(
            state_dict=kept,
            meta=dict(
                converted_from=osp.basename(args.src),
                config=osp.basename(args.whole_model),
                model=info['model'],
                backbone_layout=info['layout'],
                left_out=check['ignored'])), dst)
    print(f'{args.src} ({info["model"]}, {info["family"]} backbone in the '
          f'{info["layout"]} layout) -> {args.dst}: {len(kept)} tensors '
          f'for {args.whole_model}')
    for key, reason in check['ignored'].items():
        print(f'  left out {key}: {reason}')


def check_output(src: str, dst: str, force: bool) -> str:
    """The path to write, ``~`` expanded; exits naming the problem when
    ``dst`` is the input, a directory, in a missing directory, or exists
    and ``force`` is not set."""
    path = osp.expanduser(dst)
    source = local_checkpoint_path(src)
    if source is not None and (osp.realpath(source) == osp.realpath(path)
                               or osp.exists(source) and osp.exists(path)
                               and osp.samefile(source, path)):
        raise SystemExit(f'refusing to write {dst!r}: it is the input '
                         f'{src!r} itself; choose another output path')
    if osp.isdir(path):
        raise SystemExit(f'refusing to write {dst!r}: it is a directory; '
                         f'give a file name ending in .pth or .safetensors')
    parent = osp.dirname(osp.abspath(path))
    if not osp.isdir(parent):
        raise SystemExit(f'cannot write {dst!r}: directory {parent!r} does '
                         f'not exist')
    if osp.exists(path) and not force:
        raise SystemExit(f'refusing to overwrite {dst!r}: it exists; pass '
                         f'--force to replace it')
    return path


def main(argv=None):
    args = parse_args(argv)
    dst = check_output(args.src, args.dst, args.force)
    if args.whole_model:
        return convert_whole_model(args, dst)
    family = FAMILIES[args.family]
    state, layout = family.convert_checkpoint_file(args.src, args.prefix)
    if args.arch:
        family(args.arch).load_converted(state, args.src, layout)
    # Checked again after the conversion (which may have downloaded src).
    dst = check_output(args.src, args.dst, args.force)
    save_checkpoint_file(state, dst)
    print(f'{args.src} ({layout} layout) -> {args.dst}: {len(state)} '
          f'tensors in the mixer_backbones layout '
          f'({osp.getsize(dst) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
