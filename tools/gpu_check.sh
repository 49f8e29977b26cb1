#!/usr/bin/env bash
# One check of the GPU path, with a report: tests/gpu (every backbone vs
# timm in fp32/bf16/fp16 with gradients, mmcv's CUDA ops vs CPU, toy
# training + test of a RetinaNet, a Mask R-CNN and a Semantic FPN with
# --amp, and with 2+ GPUs a killed and resumed NCCL run), then
# tools/benchmark.py in bf16 at 800x1344 and 512x512 for the smallest arch
# of each family (ours, timm, mmpretrain; peak memory).  Sized for about 8
# minutes on one H100-class GPU (not yet timed on one); each part runs in
# its own process under a time limit.
#
#   bash tools/gpu_check.sh                 # python: $PYTHON, else .venv
#   GPU_CHECK_DIR=DIR bash tools/gpu_check.sh
#
# Without a GPU it runs what needs none (the mmcv CUDA-build test, tests/gpu
# collected and skipped), says that it found no GPU, and exits 0.  With a
# GPU it exits 1 when any part failed.  The report: $GPU_CHECK_DIR/report.md
# (default work_dirs/gpu_check in the repository).
set -uo pipefail
caller=$PWD
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# A relative GPU_CHECK_DIR is the caller's; the default is in the repo.
out=${GPU_CHECK_DIR:-$repo/work_dirs/gpu_check}
case $out in /*) ;; *) out=$caller/$out ;; esac
mkdir -p "$out"
report="$out/report.md"
started=$SECONDS
failed=()

say() { printf '%s\n' "$*" | tee -a "$report"; }
# part NAME LOG LIMIT COMMAND...: run a part for at most LIMIT seconds,
# its output in LOG, its verdict and duration in the report (pytest's exit
# 5, nothing ran, is no failure; the tests that failed or were skipped, and
# why, go into the report too). Each part is its own process, so a crash
# or a hang in one (a CUDA error, an NCCL wait) costs only that part.
part() {
  local name=$1 log=$2 limit=$3 begin=$SECONDS rc
  shift 3
  printf '\n== %s\n' "$name"
  timeout -k 10 "$limit" "$@" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ] || [ "$rc" = 5 ]; then
    say "- $name: $([ "$rc" = 0 ] && echo passed || echo 'nothing ran')" \
      "($((SECONDS - begin)) s; log $log)"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "- $name: FAILED, stopped after its limit of $limit s (log $log)"
    failed+=("$name")
  else
    say "- $name: FAILED, exit $rc ($((SECONDS - begin)) s; log $log)"
    failed+=("$name")
  fi
  grep -E '^(FAILED|ERROR|SKIPPED)' "$log" | sed 's/^/  - /' |
    tee -a "$report" >/dev/null
}

# The GPUs' names, clocks and power (again after the load, when the clocks
# and their throttle reasons say more than at idle).
gpu_state() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,power.max_limit,temperature.gpu,clocks_event_reasons.active \
      --format=csv 2>&1 | tee -a "$report"
  else
    say "nvidia-smi: not found"
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
gpu_state
say '```'
say ""

has_gpu=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)
if [ "${has_gpu:-0}" != 1 ]; then
  say "NO GPU FOUND: running only what needs none."
  say ""
fi
say "## Without a GPU"
part "mmcv CUDA build (tests/test_mmcv_cuda_build.py)" "$out/mmcv_build.log" \
  120 "$PYTHON" -m pytest tests/test_mmcv_cuda_build.py -q -rs \
  -p no:cacheprovider

if [ "${has_gpu:-0}" != 1 ]; then
  part "tests/gpu collected and skipped" "$out/tests_gpu.log" 300 \
    "$PYTHON" -m pytest tests/gpu -q -rs -p no:cacheprovider
  say ""
  if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    reason="torch does not import with $PYTHON"
  else
    reason="torch.cuda.is_available() is False"
  fi
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
# One pytest process per file (see part); limits sized for one H100-class
# GPU, with room.
pytest_gpu=("$PYTHON" -m pytest -v -s -rfEs --durations=5 -p no:cacheprovider)
part "backbones vs timm, fp32/bf16/fp16 (tests/gpu/test_gpu_backbones.py)" \
  "$out/tests_gpu_backbones.log" 300 \
  "${pytest_gpu[@]}" tests/gpu/test_gpu_backbones.py
part "mmcv CUDA ops vs CPU (tests/gpu/test_gpu_mmcv_ops.py)" \
  "$out/tests_gpu_mmcv_ops.log" 60 \
  "${pytest_gpu[@]}" tests/gpu/test_gpu_mmcv_ops.py
part "AMP training and test; NCCL kill + resume with 2 GPUs (tests/gpu/test_gpu_train_test.py)" \
  "$out/tests_gpu_train_test.log" 600 \
  "${pytest_gpu[@]}" tests/gpu/test_gpu_train_test.py
grep -hE 'max rel diff vs timm|error vs fp32' "$out/tests_gpu_backbones.log" \
  >"$out/precision.txt" || true
say ""
say "Backbones vs timm (relative to the output scale), from $out/precision.txt:"
say '```'
tee -a "$report" <"$out/precision.txt" >/dev/null
say '```'

say ""
say "## tools/benchmark.py, bf16 autocast, batch 1 (ms; training memory: peak MiB above the resident weights)"
# The smallest arch (fewest published GMACs) of each family; ours against
# timm and mmpretrain where they implement it (timm's EfficientFormer V1
# and V2 are built for one input size: the table says they cannot run at
# these sizes), ours alone where neither does.
families=$("$PYTHON" -c '
from mixer_backbones.models import FAMILIES
for name, family in FAMILIES.items():
    arch = family.smallest_arch()
    others = ("timm" if family.timm_names else "") + (
        " mmpretrain" if family.mmpretrain else "")
    print(name, arch, "ours channels_last", others)')
[ -n "$families" ] || { say "cannot list the families"; failed+=(benchmark); }
while read -r family arch variants; do
  [ -n "$family" ] || continue
  for size in "800 1344" "512 512"; do
    tag="${family}_${arch}_${size// /x}"
    # shellcheck disable=SC2086  # variants: one word each
    part "benchmark $family $arch at ${size// /x}" "$out/bench_$tag.log" 180 \
      "$PYTHON" tools/benchmark.py "$family" --arch "$arch" --size $size \
      --amp bf16 --mode both --rounds 5 --warmup 2 \
      --variants $variants --json "$out/bench_$tag.json"
    say '```'
    sed -n '/^[a-z0-9_]* .* | input /,$p' "$out/bench_$tag.log" |
      tee -a "$report" >/dev/null
    say '```'
  done
done <<<"$families"

say ""
say "GPUs after the load:"
say '```'
gpu_state
say '```'
say ""
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
fi
say "Done in $((SECONDS - started)) s; report: $report"
[ ${#failed[@]} -eq 0 ]
