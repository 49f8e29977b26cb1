"""Parameters and MACs of the backbones, counted on the meta device.

    python tools/get_flops.py                        # every arch
    python tools/get_flops.py poolformer --arch s12 --size 800 1344
    python tools/get_flops.py --markdown --throughput 512 512  # README

For each arch: the ImageNet classifier's params and GMACs at 224 (what the
papers publish, shown next to it) and the dense backbone's params and
GMACs, as the configs build it (all four outputs with their level norms;
ConvMixer with its default pyramid), at each ``--size`` (default 800x1344
and 512x512). See :mod:`mixer_backbones.flops` for what is counted; the
GMACs of the operators the published figures leave out (the family's
``published_uncounted_ops``: ConvMixer's depthwise convolutions,
PoolFormerV2's pooling) are given in brackets. ``--throughput H W`` adds
images per second of the inference form (``switch_to_deploy()``, on the
CPU with ``mixer_backbones.ops.cpu.optimize`` and in the family's
``cpu_memory_format``; batch 1) on this machine.
"""
import argparse
import json
import statistics
import time

import torch

from benchmark import machine  # tools/benchmark.py, next to this file
from mixer_backbones.engine import keep_freed_memory
from mixer_backbones.flops import classification_figures, dense_figures
from mixer_backbones.models import families
from mixer_backbones.ops import cpu


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'family', nargs='?', choices=sorted(families()), help='default: all')
    parser.add_argument('--arch', nargs='+', help='default: every arch')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        action='append',
        metavar=('H', 'W'),
        help='dense input size, repeatable (default 800 1344 and 512 512)')
    parser.add_argument(
        '--throughput',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='also time the inference form at this size (real weights)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument(
        '--markdown', action='store_true', help='print a markdown table')
    parser.add_argument('--json', help='write the figures here too')
    return parser.parse_args(argv)


def measure(family_name: str, arch: str, sizes) -> dict:
    family = families()[family_name]

    def uncounted(figures):
        return sum(figures['by_op'].get(op, 0)
                   for op in family.published_uncounted_ops)

    classifier = classification_figures(family, arch)
    with torch.device('meta'):
        backbone = family(arch=arch)
    row = dict(
        model=f'{family.__name__}-{arch}',
        params_m=classifier['params'] / 1e6,
        gmacs_224=classifier['macs'] / 1e9,
        uncounted_gmacs_224=uncounted(classifier) / 1e9,
        published=family.published.get(arch),
        dense_params_m=None,
        dense={})
    for height, width in sizes:
        figures = dense_figures(backbone, (height, width))
        row['dense_params_m'] = figures['params'] / 1e6
        row['dense'][f'{height}x{width}'] = dict(
            gmacs=figures['macs'] / 1e9,
            uncounted_gmacs=uncounted(figures) / 1e9)
    return row


def _gmacs(total: float, uncounted: float, digits: int) -> str:
    text = f'{total:.{digits}f}'
    return text + f' ({uncounted:.{digits}f})' if uncounted else text


def throughput(family_name: str, arch: str, size, rounds: int) -> float:
    """Images per second of the deploy form, batch 1, median of
    ``rounds`` timed runs after one warm-up."""
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    family = families()[family_name]
    layout = family.cpu_memory_format if device == 'cpu' else (
        torch.channels_last)
    model = family(arch=arch).to(device).eval().switch_to_deploy()
    if device == 'cpu':
        cpu.optimize(model)
    model = model.to(memory_format=layout)
    x = torch.randn(1, 3, *size, device=device).contiguous(
        memory_format=layout)
    times = []
    with torch.no_grad():
        for round_ in range(rounds + 1):
            if device == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device == 'cuda':
                torch.cuda.synchronize()
            if round_:
                times.append(time.perf_counter() - start)
    return 1 / statistics.median(times)


def format_rows(rows, sizes, markdown: bool) -> str:
    size_names = [f'{h}x{w}' for h, w in sizes]
    header = (['model', 'params (M)', 'GMACs@224', 'published'] +
              ['backbone params (M)'] + [f'GMACs@{s}' for s in size_names])
    timed = [r for r in rows if 'img_per_s' in r]
    if timed:
        header.append(f'img/s@{timed[0]["throughput_size"]}')
    lines = []
    for row in rows:
        published = row['published']
        cells = [
            row['model'], f'{row["params_m"]:.1f}',
            _gmacs(row['gmacs_224'], row['uncounted_gmacs_224'], 2),
            f'{published["params"]}M, {published["gmacs"]}'
            if published else '-',
            f'{row["dense_params_m"]:.1f}'
        ] + [
            _gmacs(row['dense'][size]['gmacs'],
                   row['dense'][size]['uncounted_gmacs'], 1)
            for size in size_names
        ]
        if timed:
            cells.append(f'{row["img_per_s"]:.2f}')
        lines.append(cells)
    if markdown:
        out = ['| ' + ' | '.join(header) + ' |',
               '|' + '---|' * len(header)]
        out += ['| ' + ' | '.join(cells) + ' |' for cells in lines]
        return '\n'.join(out)
    widths = [
        max(len(str(c)) for c in column) for column in zip(header, *lines)
    ]
    return '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(cells, widths))
                     for cells in [header] + lines)


def main(argv=None):
    args = parse_args(argv)
    if args.throughput:  # timed as tools/benchmark.py times
        keep_freed_memory()
    sizes = args.size or [(800, 1344), (512, 512)]
    known = families()
    names = [args.family] if args.family else list(known)
    rows = []
    for name in names:
        archs = args.arch or list(known[name].arch_zoo)
        for arch in archs:
            known[name].parse_arch(arch)  # names the valid archs
            row = measure(name, arch.lower(), sizes)
            if args.throughput:
                row['img_per_s'] = throughput(name, arch.lower(),
                                              args.throughput, args.rounds)
                row['throughput_size'] = '{}x{}'.format(*args.throughput)
                row['machine'] = machine()
            rows.append(row)
    print(format_rows(rows, sizes, args.markdown))
    if args.throughput:
        print(f'\nimg/s: deploy form, batch 1, fp32, on {machine()}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
