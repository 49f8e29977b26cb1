"""Peak memory of one training step (forward and backward) of a backbone.

    python tools/peak_memory.py caformer --arch s18 --size 800 1344 \\
        --size 512 512 --attention fused math

Each case runs in a fresh process: a batch of one image through the dense
backbone as the configs build it (four outputs with their level norms),
then backward. On a GPU the figure is ``torch.cuda.max_memory_allocated``
during the step; on the CPU it is the growth of the process's peak
resident memory (``ru_maxrss``) over what it held before the step, which
includes allocator slack and is therefore an upper bound. ``--attention
math`` forces PyTorch's unfused attention (the (tokens x tokens) matrix
stored), next to ``fused`` (the default kernel choice), to show what the
fused kernels save.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
from contextlib import nullcontext

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mixer_backbones import families  # noqa: E402


def _step(family_name: str, arch: str, size, attention: str,
          device: str) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = families()[family_name](arch).to(device).train()
    x = torch.randn(1, 3, *size, device=device)
    backend = sdpa_kernel(
        SDPBackend.MATH) if attention == 'math' else (nullcontext())
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss()
    with backend:
        outs = model(x)
        sum(o.float().square().mean() for o in outs).backward()
    if device == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - (
            before)
    return dict(peak_mib=peak / 2**20)


def _rss() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('family', choices=sorted(families()))
    parser.add_argument('--arch', default=None)
    parser.add_argument(
        '--size',
        nargs=2,
        type=int,
        action='append',
        metavar=('H', 'W'),
        help='input size, repeatable (default 800 1344 and 512 512)')
    parser.add_argument(
        '--attention', nargs='+', default=['fused'], choices=['fused', 'math'])
    parser.add_argument('--device', default=None)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    arch = args.arch or next(iter(families()[args.family].arch_zoo))
    if args.child:
        case = json.loads(args.child)
        print(
            json.dumps(
                _step(args.family, arch, case['size'], case['attention'],
                      device)))
        return
    sizes = args.size or [[800, 1344], [512, 512]]
    print(f'{args.family} {arch} | batch 1, fp32, forward + backward | '
          f'{device} | peak memory of the step, MiB')
    for size in sizes:
        cells = []
        for attention in args.attention:
            case = json.dumps(dict(size=size, attention=attention))
            result = subprocess.run([
                sys.executable, __file__, args.family, '--arch', arch,
                '--device', device, '--child', case
            ],
                                    check=True,
                                    capture_output=True,
                                    text=True)
            peak = json.loads(result.stdout.strip().splitlines()[-1])
            cells.append(f'{attention} {peak["peak_mib"]:.0f}')
        print(f'{size[0]}x{size[1]}: ' + ', '.join(cells))


if __name__ == '__main__':
    main()
