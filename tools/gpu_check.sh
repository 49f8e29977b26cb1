#!/usr/bin/env bash
# One check of the GPU path, with a report: tests/gpu (every backbone vs
# timm in fp32/bf16/fp16 with gradients, mmcv's CUDA ops vs CPU, toy
# training + test of a RetinaNet, a Mask R-CNN and a Semantic FPN with
# --amp, and with 2+ GPUs a killed and resumed NCCL run), then
# tools/benchmark.py in bf16 at 800x1344 and 512x512 for one arch of each
# family (ours, timm, mmpretrain; peak memory).  About 8 minutes on one
# H100-class GPU.
#
#   bash tools/gpu_check.sh                 # python: $PYTHON, else .venv
#   GPU_CHECK_DIR=DIR bash tools/gpu_check.sh
#
# Without a GPU it runs what needs none (the mmcv CUDA-build test, tests/gpu
# collected and skipped), says that it found no GPU, and exits 0.  With a
# GPU it exits 1 when any part failed.  The report: $GPU_CHECK_DIR/report.md
# (default work_dirs/gpu_check).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out=${GPU_CHECK_DIR:-work_dirs/gpu_check}
mkdir -p "$out"
report="$out/report.md"
started=$SECONDS
failed=()

say() { printf '%s\n' "$*" | tee -a "$report"; }
# part NAME LOG COMMAND...: run a part, its output in LOG, its verdict and
# duration in the report (pytest's exit 5, nothing ran, is no failure; why
# tests were skipped goes into the report too).
part() {
  local name=$1 log=$2 begin=$SECONDS rc
  shift 2
  printf '\n== %s\n' "$name"
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ] || [ "$rc" = 5 ]; then
    say "- $name: $([ "$rc" = 0 ] && echo passed || echo 'nothing ran')" \
      "($((SECONDS - begin)) s; log $log)"
    grep -E '^SKIPPED' "$log" | sed 's/^/  - /' | tee -a "$report" >/dev/null
  else
    say "- $name: FAILED, exit $rc ($((SECONDS - begin)) s; log $log)"
    failed+=("$name")
  fi
}

: >"$report"
say "# GPU check of mixer_backbones"
say ""
say "$(date -u '+%Y-%m-%d %H:%M UTC'), commit" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), python $PYTHON"
say ""
say '```'
"$PYTHON" - 2>&1 <<'PY' | tee -a "$report"
import torch
print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), '
      f'GPUs visible: {torch.cuda.device_count()}')
try:
    import mmcv
    from mmcv.ops import get_compiling_cuda_version
    print(f'mmcv {mmcv.__version__}, ops built with CUDA: '
          f'{get_compiling_cuda_version()}')
except Exception as err:  # reported, not fatal: the tests say more
    print(f'mmcv ops: cannot import ({type(err).__name__}: {err})')
PY
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,power.max_limit,temperature.gpu \
    --format=csv 2>&1 | tee -a "$report"
else
  say "nvidia-smi: not found"
fi
say '```'
say ""

say "## Without a GPU"
part "mmcv CUDA build (tests/test_mmcv_cuda_build.py)" "$out/mmcv_build.log" \
  "$PYTHON" -m pytest tests/test_mmcv_cuda_build.py -q -rs -p no:cacheprovider

has_gpu=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)
if [ "${has_gpu:-0}" != 1 ]; then
  part "tests/gpu collected and skipped" "$out/tests_gpu.log" \
    "$PYTHON" -m pytest tests/gpu -q -rs -p no:cacheprovider
  say ""
  reason="torch.cuda.is_available() is False"
  if command -v nvidia-smi >/dev/null 2>&1; then
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | sed -n 1p)
    reason="$reason although nvidia-smi runs (driver ${driver:-unknown}): is the driver older than this torch's CUDA needs? (docs/gpu.md)"
  fi
  say "NO GPU FOUND: $reason."
  say "Skipped: the backbones vs timm on the GPU, mmcv's CUDA ops, AMP"
  say "training and test, NCCL, the benchmarks."
  say ""
  say "Done in $((SECONDS - started)) s; report: $report"
  exit 0
fi

say ""
say "## On the GPU"
part "tests/gpu (backbones, mmcv CUDA ops, AMP training and test, NCCL)" \
  "$out/tests_gpu.log" \
  "$PYTHON" -m pytest tests/gpu -v -s -rfEs --durations=10 -p no:cacheprovider
grep -E 'max rel diff vs timm|error vs fp32' "$out/tests_gpu.log" \
  >"$out/precision.txt" || true
say ""
say "Backbones vs timm (relative to the output scale), from $out/precision.txt:"
say '```'
tee -a "$report" <"$out/precision.txt" >/dev/null
say '```'
grep -E '(passed|failed|skipped|error)' "$out/tests_gpu.log" | tail -n 1 |
  tee -a "$report" >/dev/null

say ""
say "## tools/benchmark.py, bf16 autocast, batch 1 (ms; peak GPU memory MiB)"
# One arch of each family that timm implements: the first of its table.
families=$("$PYTHON" -c '
from mixer_backbones.models import FAMILIES
for name, family in FAMILIES.items():
    if family.timm_names:
        print(name, next(iter(family.timm_names)))')
while read -r family arch; do
  for size in "800 1344" "512 512"; do
    tag="${family}_${arch}_${size// /x}"
    part "benchmark $family $arch at ${size// /x}" "$out/bench_$tag.log" \
      "$PYTHON" tools/benchmark.py "$family" --arch "$arch" --size $size \
      --amp bf16 --mode both --rounds 5 --warmup 2 \
      --variants ours channels_last timm mmpretrain \
      --json "$out/bench_$tag.json"
    say '```'
    sed -n '/^[a-z]* .* | input /,$p' "$out/bench_$tag.log" |
      tee -a "$report" >/dev/null
    say '```'
  done
done <<<"$families"

say ""
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
fi
say "Done in $((SECONDS - started)) s; report: $report"
[ ${#failed[@]} -eq 0 ]
