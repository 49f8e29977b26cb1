"""Convert a published checkpoint to this package's layout, offline.

Runs exactly the conversion that ``init_cfg=dict(type='Pretrained', ...)``
runs at load time, so a converted file and an original load the same.

    python tools/convert_checkpoint.py poolformer poolformer_s12.pth.tar \\
        poolformer_s12_mixer.pth [--arch s12] [--prefix backbone.]

The output is a plain state dict (``.pth``) or a ``.safetensors`` file,
chosen by the output's extension. With ``--arch`` the result is checked
against that arch (and refused if it does not fit) before it is written.
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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
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
