#!/usr/bin/env bash
# Set up everything mixer_backbones needs, idempotently.
#
#   bash tools/setup_env.sh                  # project-local virtualenv .venv
#   bash tools/setup_env.sh --venv DIR       # a virtualenv elsewhere
#   bash tools/setup_env.sh --python PYTHON  # install into an existing env
#
# In an existing environment an installed torch (e.g. your CUDA build) is
# kept and mmcv is compiled against it; otherwise the pinned torch /
# torchvision pair below is installed.  The mmcv wheel built here is cached
# outside the repository (MIXER_CACHE_DIR, default ~/.cache/mixer_backbones),
# keyed by python, torch and CUDA versions, so a rerun takes seconds.
set -Eeuo pipefail

# Everything runs inside main(), which bash parses whole before running it,
# so editing this file during a set-up cannot derail the run.
main() {

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
MMSEG_VERSION=1.2.2
TIMM_VERSION=1.0.31
# mmcv 2.1.0's setup.py imports pkg_resources (gone in setuptools 81) and
# torch 2.14 needs setuptools >= 77.0.3.
SETUPTOOLS_SPEC='setuptools>=77.0.3,<81'

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
python_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$(realpath -m "$2"); shift 2 ;;
    --python) python_bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup_env.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
cache_dir="${MIXER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mixer_backbones}"
log_dir="$cache_dir/logs"
mkdir -p "$log_dir"

current_step="starting"
step_count=0
total_steps=7
started=$SECONDS
step() {
  step_count=$((step_count + 1))
  current_step="$1"
  printf '\n[%d/%d] %s  (%ds elapsed)\n' "$step_count" "$total_steps" \
    "$1" "$((SECONDS - started))"
}
on_error() {
  local rc=$?
  printf '\nset-up FAILED at step "%s" (exit code %d).\n' "$current_step" \
    "$rc" >&2
  [ -n "${step_log:-}" ] && [ -f "$step_log" ] &&
    printf 'Last lines of %s:\n%s\n' "$step_log" "$(tail -n 25 "$step_log")" >&2
  exit "$rc"
}
trap on_error ERR

step "python environment"
if [ -n "$python_bin" ]; then
  py=$(command -v "$python_bin") || {
    echo "--python: '$python_bin' is not an executable" >&2; false; }
  echo "installing into the existing environment of $py"
else
  if [ ! -x "$venv/bin/python" ]; then
    base_python=$(command -v python3 || command -v python)
    "$base_python" -m venv "$venv"
    echo "created virtualenv $venv"
  else
    echo "reusing virtualenv $venv"
  fi
  py="$venv/bin/python"
fi
"$py" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' || {
  echo "python >= 3.9 is required, got $("$py" -V 2>&1)" >&2; false; }
pip() { "$py" -m pip --disable-pip-version-check "$@"; }
step_log="$log_dir/pip.log"
pip install -q "$SETUPTOOLS_SPEC" wheel ninja >"$step_log" 2>&1

step "torch and torchvision"
if "$py" -c 'import torch, torchvision' >/dev/null 2>&1 && [ -n "$python_bin" ]
then
  echo "keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    >"$step_log" 2>&1
fi
# torchvision's compiled ops must run next to this torch (a CPU torch with a
# CUDA torchvision fails here with "operator torchvision::nms does not exist").
"$py" - <<'PY'
import torch, torchvision
from torchvision.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
assert nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
print(f'torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'CUDA available: {torch.cuda.is_available()}')
PY

step "mmengine $MMENGINE_VERSION"
pip install -q "mmengine==$MMENGINE_VERSION" >"$step_log" 2>&1

step "mmcv $MMCV_VERSION with compiled ops"
have_mmcv_ops() {
  "$py" - "$MMCV_VERSION" >/dev/null 2>&1 <<'PY'
import sys
import mmcv
from mmcv.ops import nms  # noqa: F401  (needs the compiled mmcv._ext)
assert mmcv.__version__ == sys.argv[1]
PY
}
if have_mmcv_ops; then
  echo "mmcv $MMCV_VERSION with ops is already installed"
else
  key=$("$py" -c 'import sys, torch
print(f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}"
      f"-cuda{torch.version.cuda if torch.cuda.is_available() else 0}")')
  wheel_dir="$cache_dir/wheels/$key"
  wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    build_dir=$(mktemp -d)
    step_log="$log_dir/mmcv-build.log"
    echo "no cached wheel for $key: building mmcv from source"
    echo "(about 16 minutes on 2 cores; full log: $step_log)"
    pip download -q --no-deps --no-binary :all: --no-build-isolation \
      -d "$build_dir" "mmcv==$MMCV_VERSION" >"$step_log" 2>&1
    tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
    src="$build_dir/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes C++17.
    grep -q -- '-std=c++17' "$src/setup.py"
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    # CPU build: csrc/pytorch/*.cpp and csrc/pytorch/cpu/*.cpp (more with CUDA).
    n_sources=$(ls "$src"/mmcv/ops/csrc/pytorch/*.cpp \
      "$src"/mmcv/ops/csrc/pytorch/cpu/*.cpp | wc -l)
    (
      while sleep 30; do
        n=$(find "$src" -name '*.o' 2>/dev/null | wc -l)
        printf '  compiling mmcv ops: %d of about %d sources done (%ds)\n' \
          "$n" "$n_sources" "$((SECONDS - started))"
      done
    ) &
    progress_pid=$!
    trap 'kill $progress_pid 2>/dev/null || true' EXIT
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      pip wheel --no-deps --no-build-isolation -w "$build_dir/dist" "$src" \
      >>"$step_log" 2>&1
    kill "$progress_pid" 2>/dev/null || true
    mkdir -p "$wheel_dir"
    cp "$build_dir"/dist/mmcv-*.whl "$wheel_dir/"
    rm -rf "$build_dir"
    wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
    echo "built and cached $wheel"
  else
    echo "using the cached wheel $wheel"
  fi
  step_log="$log_dir/pip.log"
  pip install -q "$wheel" >"$step_log" 2>&1
  have_mmcv_ops || { echo "mmcv installed but mmcv.ops does not import" >&2; false; }
fi

step "mmdet $MMDET_VERSION, mmsegmentation $MMSEG_VERSION, timm, pycocotools"
# ftfy and regex: mmseg's models import them but its wheel does not ask for them.
pip install -q "mmdet==$MMDET_VERSION" "mmsegmentation==$MMSEG_VERSION" \
  "timm==$TIMM_VERSION" pycocotools ftfy regex "$SETUPTOOLS_SPEC" \
  >"$step_log" 2>&1

step "mixer_backbones (editable) with test, benchmark and export extras"
# benchmark: mmpretrain, the third implementation tools/benchmark.py times;
# export: onnx, onnxscript and onnxruntime for the ONNX export tests.
pip install -q --no-build-isolation -e "$repo[tests,benchmark,export]" \
  >"$step_log" 2>&1

step "checking the stack"
"$py" - <<'PY'
import mmcv, mmdet, mmengine, mmseg, timm, torch
import mixer_backbones
from mmcv.ops import RoIAlign, nms  # noqa: F401
print(f'torch {torch.__version__} | mmengine {mmengine.__version__} | '
      f'mmcv {mmcv.__version__} (ops) | mmdet {mmdet.__version__} | '
      f'mmseg {mmseg.__version__} | timm {timm.__version__} | '
      f'mixer_backbones {mixer_backbones.__version__}')
PY
trap - ERR
printf '\nset-up done in %ds; python: %s\n' "$((SECONDS - started))" "$py"
}

main "$@"
