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
"""
import argparse
import os.path as osp

import torch

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
    return parser.parse_args(argv)


def convert_whole_model(args) -> None:
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
    torch.save(
        dict(
            state_dict=kept,
            meta=dict(
                converted_from=osp.basename(args.src),
                config=osp.basename(args.whole_model),
                model=info['model'],
                backbone_layout=info['layout'],
                left_out=check['ignored'])), args.dst)
    print(f'{args.src} ({info["model"]}, {info["family"]} backbone in the '
          f'{info["layout"]} layout) -> {args.dst}: {len(kept)} tensors '
          f'for {args.whole_model}')
    for key, reason in check['ignored'].items():
        print(f'  left out {key}: {reason}')


def main(argv=None):
    args = parse_args(argv)
    if args.whole_model:
        return convert_whole_model(args)
    family = FAMILIES[args.family]
    state, layout = family.convert_checkpoint_file(args.src, args.prefix)
    if args.arch:
        family(args.arch).load_converted(state, args.src, layout)
    if args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, args.dst)
    else:
        torch.save(state, args.dst)
    print(f'{args.src} ({layout} layout) -> {args.dst}: {len(state)} '
          f'tensors in the mixer_backbones layout '
          f'({osp.getsize(args.dst) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
