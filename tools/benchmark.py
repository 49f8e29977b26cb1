"""Benchmark a backbone side by side with timm's, on the same weights and
the same input, in one process.

    python tools/benchmark.py poolformer --arch s12 --size 512 512
    python tools/benchmark.py efficientformer --arch l1 --variants ours deploy
    python tools/benchmark.py convmixer --arch 1024_20 --mode both --json f

Variants: ``ours`` (the plain PyTorch model), ``channels_last`` (ours in
NHWC), ``optimized`` and ``optimized_channels_last`` (ours with
``mixer_backbones.ops.cpu.optimize`` on the CPU: fused oneDNN kernels in
inference, the fast depthwise-convolution backward in training),
``deploy`` (ours after ``switch_to_deploy()``, optimized on the CPU),
``deploy_channels_last``, ``timm``,
``timm_channels_last``, ``mmpretrain`` and ``mmpretrain_channels_last`` (the
optional ``benchmark`` extra), ``compiled`` and ``timm_compiled``
(``torch.compile`` with inductor; the first warm-up round compiles), and
``gemm_floor``: our model's dense 1x1 convolutions alone, each on an input
of the shape it gets in the forward (inference only). Those are GEMMs
that every exact implementation runs, so ``gemm_floor`` bounds the
speed-up any fp32 variant can reach on the machine. Each
is timed in interleaved rounds (round r runs every variant once) after
warm-up, and reported as median and spread (min-max) of the rounds;
ratios are against timm's eager model when it runs, else the first
variant. Next to every
timing, the largest difference of the variant's stage outputs from the
first variant's (``ours`` by default), relative to their scale
(``max|a - b| / max|b|``): a speed-up only counts when that column is at
float rounding. Memory: on CUDA the peak GPU memory of one training
step above what is resident before it (the weights and gradients of
every variant); on the CPU the bytes saved for backward by one training
step. Like timm's ``forward_features``, our variants run the stem and
units without the output norms or ConvMixer's pyramid unless ``--full``
is given. On the CPU, glibc's malloc is set to keep freed memory
(``mixer_backbones.engine.keep_freed_memory``, as our train and test tools
do) for every variant alike; ``MIXER_MALLOC_TUNING=0`` times its defaults.
"""
import argparse
import copy
import functools
import json
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from mixer_backbones.engine import keep_freed_memory
from mixer_backbones.models import families
from mixer_backbones.ops import cpu

FAMILIES = families()
OURS = ('ours', 'channels_last', 'optimized', 'optimized_channels_last',
        'deploy', 'deploy_channels_last')
DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('family', choices=sorted(FAMILIES))
    parser.add_argument('--arch', help='defaults to the smallest arch')
    parser.add_argument(
        '--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument(
        '--mode', choices=['infer', 'train', 'both'], default='infer')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=[
            'ours', 'channels_last', 'deploy', 'deploy_channels_last',
            'timm', 'timm_channels_last'
        ])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--amp',
        choices=sorted(DTYPES),
        default='fp32',
        help='autocast dtype (GPU); fp32 also enables TF32 on GPU')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--full',
        action='store_true',
        help='time our whole forward, with the output norms and '
        "ConvMixer's pyramid, which timm's models do not have")
    parser.add_argument('--json', help='write the results here too')
    return parser.parse_args(argv)


def raw_features(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Our stage (or block) outputs before any output norm or pyramid."""
    return model.unit_outputs(x)


class GemmFloor:
    """Runs ``model``'s dense 1x1 convolutions alone, each on an input of
    the shape it gets in the model's forward (taken on the first call)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.calls = None

    def __call__(self, x: torch.Tensor) -> None:
        if self.calls is None:
            self.calls = []
            convs = [
                m for m in self.model.modules()
                if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                and m.groups == 1
            ]
            hooks = [
                conv.register_forward_hook(lambda m, inp, out: self.calls.
                                           append((m, inp[0].detach())))
                for conv in convs
            ]
            try:
                raw_features(self.model, x)
            finally:
                for hook in hooks:
                    hook.remove()
        for conv, inp in self.calls:
            conv(inp)


def timm_features(model: nn.Module, x: torch.Tensor,
                  indices) -> List[torch.Tensor]:
    """timm's outputs at the same stages/blocks, through forward hooks."""
    units = model.stages if hasattr(model, 'stages') else model.blocks
    captured = {}
    hooks = [
        units[i].register_forward_hook(
            lambda m, inp, out, i=i: captured.__setitem__(i, out))
        for i in indices
    ]
    try:
        model.forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [captured[i] for i in indices]


def relative_difference(outs, reference) -> float:
    worst = 0.
    for a, b in zip(outs, reference):
        if a.dim() == 3 and b.dim() == 4:  # EfficientFormer's last stage
            a = a.transpose(1, 2)  # as tokens in timm and mmpretrain
        a = a.float().reshape(b.shape)
        worst = max(worst, ((a - b).abs().max() /
                            b.abs().max().clamp_min(1e-12)).item())
    return worst


def saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the distinct tensors autograd saves during ``step``."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def mmpretrain_model(family: type, arch: str, ours: nn.Module) -> nn.Module:
    """mmpretrain's backbone for ``arch`` carrying ``ours``' weights.

    The weights go through our own converter backwards: each of
    mmpretrain's tensors is filled with its index, converted to our layout,
    and the index found in each converted tensor says which of ours it
    receives. A tensor that mixes sources, or one left unmapped apart from
    mmpretrain's output norms, is refused.
    """
    from mmpretrain.models import backbones
    spec = family.mmpretrain
    if spec is None:
        raise ValueError(f'{family.__name__} declares no mmpretrain model')
    model = getattr(backbones, spec['type'])(
        arch=spec.get('archs', {}).get(arch, arch),
        **spec.get('kwargs', {}).get(arch, {}))
    theirs = model.state_dict()
    keys = list(theirs)
    markers = {
        k: torch.full_like(v, i, dtype=torch.float64)
        for i, (k, v) in enumerate(theirs.items())
    }
    converted, _ = family.convert_checkpoint(markers)
    mine = ours.state_dict()
    filled = set()
    for key, marker in converted.items():
        if key not in mine:
            continue
        sources = marker.unique()
        if sources.numel() != 1:
            raise ValueError(f'{key} mixes several mmpretrain tensors')
        source = keys[int(sources.item())]
        theirs[source] = mine[key].reshape(theirs[source].shape).to(
            theirs[source].dtype)
        filled.add(source)
    # Left alone: mmpretrain's output norms and its integer buffers (batch
    # counters, attention-bias index tables it derives itself).
    missing = [
        k for k in keys if k not in filled and not k.startswith('norm')
        and theirs[k].is_floating_point()
    ]
    if missing:
        raise ValueError(f'no weights of ours for {missing[:3]}')
    model.load_state_dict(theirs)
    return model


def mmpretrain_units(family: type,
                     model: nn.Module,
                     x: torch.Tensor,
                     indices=None) -> List[torch.Tensor]:
    """mmpretrain's stem and units without its output norms (what timm's
    ``forward_features`` runs); the outputs of the units at ``indices``
    (ours), or of the last unit."""
    spec = family.mmpretrain
    stem, units = getattr(model, spec['stem']), getattr(model, spec['units'])
    step = spec.get('unit_step', 1)
    wanted = ({len(units) - 1} if indices is None else
              {step * i
               for i in indices})
    outs = []
    x = stem(x)
    for index, unit in enumerate(units):
        x = unit(x)
        if index in wanted:
            outs.append(x)
    return outs


def build_variants(args) -> Dict[str, dict]:
    """``{variant: entry}``, every model with the same weights (timm's
    random initialisation converted to each layout)."""
    import timm
    family = FAMILIES[args.family]
    arch = args.arch or next(iter(family.arch_zoo))
    reference = timm.create_model(family.timm_names[arch], pretrained=False)
    # Like for like with timm's forward_features: unless --full, time the
    # stem and units alone, without output norms or a pyramid.
    kwargs = {} if args.full else dict(family.benchmark_kwargs)
    ours = family(arch, **kwargs)
    ours.load_converted(
        family.convert_checkpoint(reference.state_dict())[0], 'timm model')

    def build(name: str) -> dict:
        entry = dict(model=None, features=None, note='')
        if name in ('compiled', 'timm_compiled'):
            # torch.compile (inductor) of the eager variant's forward.
            entry = build(dict(compiled='ours', timm_compiled='timm')[name])
            entry['run'] = torch.compile(entry['run'])
        elif name in OURS:
            model = family(arch, **kwargs)
            model.load_state_dict(ours.state_dict())
            if name.startswith('deploy'):
                model.eval().switch_to_deploy()
            if name.startswith(('deploy', 'optimized')) and (
                    args.device == 'cpu'):
                cpu.optimize(model)
            run = model if args.full else functools.partial(
                raw_features, model)
            entry.update(model=model, features=raw_features, run=run)
        elif name == 'gemm_floor':
            model = family(arch, **kwargs)
            model.load_state_dict(ours.state_dict())
            entry.update(model=model, features=None, run=GemmFloor(model))
        elif name in ('timm', 'timm_channels_last'):
            # Each variant owns its model: memory formats must not leak.
            # It returns the same stage outputs as ours (forward_features
            # and hooks), so that the training step's loss and backward
            # cover the same tensors in both.
            model = copy.deepcopy(reference)
            features = functools.partial(
                timm_features, indices=ours.out_indices)
            entry.update(
                model=model,
                features=features,
                run=functools.partial(features, model))
        elif name in ('mmpretrain', 'mmpretrain_channels_last'):
            try:
                model = mmpretrain_model(family, arch, ours)
            except (ImportError, ValueError) as err:
                entry['note'] = f'cannot build: {err}'
                return entry
            # The same stage outputs as ours, as for timm.
            features = functools.partial(
                mmpretrain_units, family, indices=ours.out_indices)
            entry.update(
                model=model,
                features=features,
                run=functools.partial(features, model))
        else:
            raise SystemExit(f'unknown variant {name!r}')
        entry['channels_last'] = name.endswith('channels_last')
        return entry

    return {name: build(name) for name in args.variants}


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    # Every variant runs under the same allocator settings (the header
    # says which); MIXER_MALLOC_TUNING=0 times glibc's defaults.
    args.malloc = 'kept' if device.type == 'cpu' and keep_freed_memory(
        cpu_only=False) else 'default'
    if device.type == 'cuda' and args.amp == 'fp32':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    variants = build_variants(args)
    x = torch.randn(args.batch, 3, *args.size, device=device)

    def autocast():
        dtype = DTYPES[args.amp]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def prepare(entry):
        model = entry['model'].to(device)
        fmt = (
            torch.channels_last
            if entry['channels_last'] else torch.contiguous_format)
        return model.to(memory_format=fmt), x.contiguous(memory_format=fmt)

    runnable, results = {}, {}
    with torch.no_grad():
        reference = None
        for name, entry in variants.items():
            if entry['model'] is None:
                results[name] = dict(note=entry['note'])
                continue
            model, inp = prepare(entry)
            model.eval()
            if entry['features'] is None:  # gemm_floor: no outputs
                with autocast():
                    entry['run'](inp)  # takes its inputs, untimed
                runnable[name] = (entry, model, inp)
                results[name] = dict(max_rel_diff=None)
                continue
            try:
                with autocast():
                    feats = entry['features'](model, inp)
            except Exception as err:  # e.g. timm EfficientFormer off 224
                results[name] = dict(note=f'cannot run: {type(err).__name__}'
                                     f': {str(err).splitlines()[0][:80]}')
                continue
            feats = [f.float() for f in feats]
            reference = reference or feats
            runnable[name] = (entry, model, inp)
            results[name] = dict(
                max_rel_diff=relative_difference(feats, reference))

    def infer(run, inp):
        with torch.no_grad(), autocast():
            run(inp)

    def train(run, inp):
        with autocast():
            outs = run(inp)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            loss = sum(o.float().pow(2).mean() for o in outs)
        loss.backward()

    modes = ['infer', 'train'] if args.mode == 'both' else [args.mode]
    for mode in modes:
        step = infer if mode == 'infer' else train
        # The deploy form has no BatchNorm left to train; gemm_floor
        # times inference only.
        inference_only = [n for n in runnable
                          if n.startswith('deploy') or n == 'gemm_floor']
        active = {
            name: value
            for name, value in runnable.items()
            if mode == 'infer' or name not in inference_only
        }
        for entry, model, inp in active.values():
            model.train(mode == 'train')
        times = {name: [] for name in active}
        for round_ in range(args.warmup + args.rounds):
            for name, (entry, model, inp) in active.items():
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step(entry['run'], inp)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if round_ >= args.warmup:
                    times[name].append(time.perf_counter() - start)
        for name, (entry, model, inp) in active.items():
            ms = [t * 1e3 for t in times[name]]
            results[name][mode] = dict(
                median_ms=statistics.median(ms),
                min_ms=min(ms),
                max_ms=max(ms),
                images_per_s=args.batch * 1e3 / statistics.median(ms))
            if mode == 'train':
                if device.type == 'cuda':
                    # Above what is resident (every variant's weights and
                    # gradients), so that each figure is its own step's.
                    torch.cuda.synchronize()
                    resident = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    step(entry['run'], inp)
                    results[name][mode]['peak_gpu_mib'] = (
                        torch.cuda.max_memory_allocated() - resident) / 2**20
                else:
                    results[name][mode]['saved_for_backward_mib'] = (
                        saved_bytes(lambda: step(entry['run'], inp)) / 2**20)
    print_table(args, results, modes)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(args=vars(args), machine=machine(), results=results),
                f,
                indent=1)
    return results


def machine() -> str:
    import platform
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return (f'{platform.processor() or platform.machine()}, '
            f'{torch.get_num_threads()} threads')


def print_table(args, results, modes) -> None:
    base: Optional[str] = 'timm' if 'median_ms' in results.get('timm', {}).get(
        modes[0], {}) else next(
            (n for n, r in results.items() if modes[0] in r), None)
    print(f'\n{args.family} {args.arch or ""} | input {args.batch}x3x'
          f'{args.size[0]}x{args.size[1]} | {args.amp} | {args.device} '
          f'({machine()}) | malloc {args.malloc} | {args.rounds} rounds '
          f'after {args.warmup} warm-up; ratios vs {base}')
    for mode in modes:
        print(f'\n{mode:<20} {"median ms":>10} {"min-max":>15} '
              f'{"img/s":>7} {"speed-up":>8} {"max rel diff":>12}' +
              ('  memory MiB' if mode == 'train' else ''))
        for name, result in results.items():
            if mode not in result:
                print(f'{name:<20} {result.get("note", "")}')
                continue
            r = result[mode]
            ratio = results[base][mode]['median_ms'] / r['median_ms']
            memory = r.get('peak_gpu_mib', r.get('saved_for_backward_mib'))
            diff = result['max_rel_diff']
            print(f'{name:<20} {r["median_ms"]:>10.1f} '
                  f'{r["min_ms"]:>7.1f}-{r["max_ms"]:<7.1f} '
                  f'{r["images_per_s"]:>7.2f} {ratio:>7.2f}x ' +
                  (f'{diff:>12.1e}' if diff is not None else f'{"-":>12}') +
                  (f'  {memory:>10.1f}' if memory is not None else ''))


if __name__ == '__main__':
    main()
