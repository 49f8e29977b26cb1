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
#
# mmcv's CUDA ops are built when torch is a CUDA build and sees a GPU, or
# with FORCE_CUDA=1 (no GPU needed); FORCE_CUDA=0 builds CPU ops only.
# TORCH_CUDA_ARCH_LIST picks the GPU architectures (default: the visible
# GPUs, else a few current ones).  nvcc must match torch's CUDA version:
# the system toolkit when it does, else nvcc from the package registry
# (MIXER_CUDA_TOOLKIT=registry to always use that).  See docs/gpu.md.
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
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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

# The C++ standard torch's own headers demand (ATen.h refuses older ones):
# C++20 for torch >= 2.10, C++17 before.
torch_cxx_std() {
  "$py" - <<'PY'
import importlib.util
import os
import re
torch_dir = importlib.util.find_spec('torch').submodule_search_locations[0]
with open(os.path.join(torch_dir, 'include', 'ATen', 'ATen.h')) as f:
    found = re.search(r'__cplusplus < (20\d\d)', f.read())
print({'2020': 20, '2017': 17, '2014': 14}.get(found and found.group(1), 17))
PY
}
# mmcv 2.1.0's setup.py asks for C++17 from the host compiler and from nvcc
# for every torch > 1.12.1.  Raise exactly those two flags to the standard
# torch's headers need (when it is above C++17), after checking that the
# host compiler accepts it (nvcc is checked with the toolkit).
patch_mmcv_std() {
  [ "$torch_std" -gt 17 ] || return 0
  local cxx=${CXX:-c++}
  echo 'int main() { return 0; }' |
    "$cxx" -std=c++"$torch_std" -x c++ -fsyntax-only - >/dev/null 2>&1 || {
    echo "torch's headers need C++$torch_std, which the host compiler" \
      "$cxx ($("$cxx" --version 2>&1 | head -n 1)) does not accept:" \
      "set CXX to a newer one (gcc >= 10, clang >= 10)" >&2; false; }
  "$py" - "$1" "$torch_std" <<'PY'
import sys
path, std = sys.argv[1], sys.argv[2]
with open(path) as f:
    text = f.read()
for flag in ("extra_compile_args['cxx'] = ['-std=c++17']",
             "extra_compile_args['nvcc'] += ['-std=c++17']"):
    if text.count(flag) != 1:
        sys.exit(f'{path}: expected {flag!r} once, '
                 f'found it {text.count(flag)} times')
    text = text.replace(flag, flag.replace('c++17', f'c++{std}'))
with open(path, 'w') as f:
    f.write(text)
PY
  echo "C++$torch_std for the host compiler and nvcc (mmcv asks C++17;" \
    "torch's headers need C++$torch_std)"
}
# Paths matching nvidia/*/PATTERN in the environment's site-packages: the
# CUDA packages torch depends on, and the registry toolkit.
nvidia_paths() {
  "$py" - "$1" <<'PY'
import glob
import os
import sys
import sysconfig
paths = sysconfig.get_paths()
for base in dict.fromkeys([paths['purelib'], paths['platlib']]):
    for found in sorted(glob.glob(os.path.join(base, 'nvidia', '*',
                                               sys.argv[1]))):
        print(found)
PY
}
nvcc_release() {
  { "$1" --version 2>/dev/null || true; } |
    sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | sed -n 1p
}
# A CUDA toolkit whose version is torch.version.cuda (torch refuses another
# major version, and a minor mismatch is unsupported): the system one when it
# matches (CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda-X.Y,
# /usr/local/cuda), else nvcc and headers from the package registry,
# installed into the environment.  MIXER_CUDA_TOOLKIT=registry skips the
# system one.  Sets cuda_home, cuda_cpath and cuda_library_path.
setup_cuda_toolkit() {
  local dir rel nvcc_bin cudart major
  cuda_home=""
  if [ "${MIXER_CUDA_TOOLKIT:-auto}" != registry ]; then
    for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" \
        "$(dirname "$(dirname "$(command -v nvcc || echo /-/bin/nvcc)")")" \
        "/usr/local/cuda-$torch_cuda" /usr/local/cuda; do
      # A toolkit root: nvcc and the runtime headers (not a wrapper's dir).
      [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ] &&
        [ -f "$dir/include/cuda_runtime.h" ] || continue
      rel=$(nvcc_release "$dir/bin/nvcc")
      if [ "$rel" = "$torch_cuda" ]; then
        cuda_home=$dir
        echo "toolkit: nvcc $rel in $dir"
        break
      fi
      echo "toolkit: not nvcc ${rel:-(unknown version)} in $dir" \
        "(torch is built with CUDA $torch_cuda)"
    done
  fi
  if [ -z "$cuda_home" ]; then
    major=${torch_cuda%%.*}
    local suffix="" packages
    [ "$major" -ge 13 ] || suffix="-cu$major"
    packages=("nvidia-cuda-nvcc$suffix==$torch_cuda.*"
      "nvidia-cuda-runtime$suffix==$torch_cuda.*"
      "nvidia-cuda-cccl$suffix==$torch_cuda.*")
    # From CUDA 13 the C runtime headers and NVVM are packages of their own.
    [ "$major" -ge 13 ] && packages+=("nvidia-cuda-crt==$torch_cuda.*"
      "nvidia-nvvm==$torch_cuda.*")
    echo "toolkit: installing CUDA $torch_cuda's nvcc and headers from the" \
      "package registry: ${packages[*]}"
    pip install -q "${packages[@]}" >>"$step_log" 2>&1
    nvcc_bin=$(nvidia_paths bin/nvcc)
    nvcc_bin=${nvcc_bin%%$'\n'*}
    [ -n "$nvcc_bin" ] || {
      echo "no nvidia/*/bin/nvcc in the environment after installing" \
        "${packages[*]}" >&2; false; }
    cuda_home=$(dirname "$(dirname "$nvcc_bin")")
    rel=$(nvcc_release "$nvcc_bin")
    [ "$rel" = "$torch_cuda" ] || {
      echo "the registry's nvcc is CUDA ${rel:-(unknown)}, torch needs" \
        "$torch_cuda" >&2; false; }
    echo "toolkit: nvcc $rel in $cuda_home"
  fi
  # Headers of the CUDA libraries torch was built against (cuBLAS, cuSPARSE,
  # cuSOLVER... that ATen's CUDA headers include), from torch's packages.
  cuda_cpath=$(nvidia_paths include)
  cuda_cpath=${cuda_cpath//$'\n'/:}${CPATH:+:$CPATH}
  # torch links the extension with -lcudart; the packages ship only
  # libcudart.so.N.
  cuda_library_path=${LIBRARY_PATH:-}
  if [ ! -e "$cuda_home/lib64/libcudart.so" ] &&
     [ ! -e "$cuda_home/lib/libcudart.so" ]; then
    cudart=$(ls "$cuda_home"/lib*/libcudart.so.[0-9]* 2>/dev/null || true)
    [ -n "$cudart" ] || cudart=$(nvidia_paths 'lib/libcudart.so.[0-9]*')
    cudart=${cudart%%$'\n'*}
    [ -n "$cudart" ] || { echo "no libcudart.so.* for CUDA $torch_cuda" >&2
      false; }
    mkdir -p "$build_dir/cuda-lib"
    ln -sf "$cudart" "$build_dir/cuda-lib/libcudart.so"
    cuda_library_path="$build_dir/cuda-lib${cuda_library_path:+:$cuda_library_path}"
  fi
  # A few seconds here rather than a failure an hour into the build: nvcc
  # compiles C++$torch_std for every requested architecture, finds the CUB,
  # Thrust and cuBLAS headers, and links libcudart.
  local gencode=() arch number
  for arch in ${arch_list//;/ }; do
    number=${arch%+PTX}
    number=${number//./}
    gencode+=(-gencode "arch=compute_$number,code=sm_$number")
    [ "$arch" = "${arch%+PTX}" ] ||
      gencode+=(-gencode "arch=compute_$number,code=compute_$number")
  done
  cat >"$build_dir/toolkit_check.cu" <<'CU'
#include <cublas_v2.h>
#include <cub/version.cuh>
#include <thrust/version.h>
__global__ void add_one(float *x) { x[threadIdx.x] += 1.0f; }
void launch(float *x) { add_one<<<1, 32>>>(x); }
CU
  # Linked like torch links the extension: by the host compiler, with
  # CUDA_HOME's lib64 or lib.
  if ! (export CPATH="$cuda_cpath" LIBRARY_PATH="$cuda_library_path"
      cd "$build_dir" &&
      "$cuda_home/bin/nvcc" -std=c++"$torch_std" "${gencode[@]}" \
        -Xcompiler -fPIC -c toolkit_check.cu -o toolkit_check.o &&
      "${CXX:-c++}" -shared toolkit_check.o -o toolkit_check.so \
        -L"$cuda_home/lib64" -L"$cuda_home/lib" -lcudart) \
      >>"$step_log" 2>&1; then
    echo "nvcc $rel in $cuda_home cannot build C++$torch_std CUDA code for" \
      "$arch_list with torch's CUDA headers (see $step_log)" >&2
    false
  fi
  echo "toolkit check: C++$torch_std CUDA code for $arch_list compiles and links"
}

step "mmcv $MMCV_VERSION with compiled ops"
# CUDA ops are built when torch is a CUDA build and sees a GPU, or with
# FORCE_CUDA=1 (a CUDA torch on a machine without a GPU, e.g. a login node);
# FORCE_CUDA=0 builds the CPU ops only.  Without a GPU the default is the
# CPU-only build (quicker, and all a CPU machine can run).
# One python call reads torch's CUDA version, the visible GPUs and the
# installed mmcv: "none", "cpu" (ops without CUDA) or "cuda<version>".
probe() {
  "$py" - "$MMCV_VERSION" 2>"$log_dir/probe.log" <<'PY'
import sys
import torch
caps = sorted({'%d.%d' % torch.cuda.get_device_capability(i)
               for i in range(torch.cuda.device_count())}
              if torch.cuda.is_available() else [])
state = 'none'
try:
    import mmcv
    from mmcv.ops import get_compiling_cuda_version
    from mmcv.ops import nms  # noqa: F401  (needs the compiled mmcv._ext)
    if mmcv.__version__ == sys.argv[1]:
        built = get_compiling_cuda_version()
        state = 'cpu' if built == 'not available' else f'cuda{built}'
except Exception:  # mmcv missing, or built without ops
    pass
print(f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}',
      torch.version.cuda or '-', ';'.join(caps) or '-', state)
PY
}
ops_built() {
  case "$1" in
    cpu) echo "CPU ops" ;;
    cuda*) echo "CPU and CUDA ${1#cuda} ops" ;;
    *) echo "no ops" ;;
  esac
}
read -r base_key torch_cuda gpu_archs mmcv_state <<<"$(probe)" || {
  echo "could not query torch and mmcv (see $log_dir/probe.log)" >&2; false; }
case "${FORCE_CUDA:-}" in
  1) with_cuda=1 ;;
  0) with_cuda=0 ;;
  '') with_cuda=0
      [ "$torch_cuda" != - ] && [ "$gpu_archs" != - ] && with_cuda=1 ;;
  *) echo "FORCE_CUDA must be 1 or 0, got '$FORCE_CUDA'" >&2; false ;;
esac
if [ "$with_cuda" = 1 ] && [ "$torch_cuda" = - ]; then
  echo "FORCE_CUDA=1, but torch ${base_key#*-torch} is not a CUDA build" \
    "(torch.version.cuda is None): install a CUDA torch first" >&2
  false
fi
if [ "$with_cuda" = 1 ]; then
  # Architectures: TORCH_CUDA_ARCH_LIST, else the visible GPUs, else
  # current data-centre and consumer GPUs that this CUDA version compiles
  # for (8.6/8.9 run the 8.0 code), with PTX for newer ones.
  cuda_major=${torch_cuda%%.*}
  cuda_minor=${torch_cuda#*.}
  cuda_minor=${cuda_minor%%.*}
  if [ -n "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    arch_list=$TORCH_CUDA_ARCH_LIST
  elif [ "$gpu_archs" != - ]; then
    arch_list=$gpu_archs
  elif [ "$cuda_major" -ge 13 ] ||
       { [ "$cuda_major" = 12 ] && [ "$cuda_minor" -ge 8 ]; }; then
    arch_list='7.5;8.0;9.0;10.0;12.0+PTX'
  elif [ "$cuda_major" = 12 ] ||
       { [ "$cuda_major" = 11 ] && [ "$cuda_minor" -ge 8 ]; }; then
    arch_list='7.5;8.0;9.0+PTX'
  else
    arch_list='7.0;7.5;8.0+PTX'
  fi
  arch_list=$(echo "$arch_list" | tr ' ,' ';;' | tr -s ';')
  arch_list=${arch_list#;}
  arch_list=${arch_list%;}
  key="$base_key-cuda$torch_cuda-arch$(echo "$arch_list" | tr ';' '_')"
  echo "CUDA ops: torch CUDA $torch_cuda, architectures $arch_list" \
    "(visible GPUs: ${gpu_archs/-/none})"
  [ "${mmcv_state#cuda}" = "$torch_cuda" ] && have_ops=1 || have_ops=0
else
  # The key of CPU-only builds, unchanged since the first set-up.
  key="$base_key-cuda0"
  [ "$mmcv_state" != none ] && have_ops=1 || have_ops=0
  [ "$torch_cuda" != - ] && [ "${FORCE_CUDA:-}" != 0 ] &&
    echo "CPU ops only (no GPU visible; FORCE_CUDA=1 builds the CUDA ops too)"
fi
if [ "$have_ops" = 1 ]; then
  echo "mmcv $MMCV_VERSION with $(ops_built "$mmcv_state") is already installed"
else
  wheel_dir="$cache_dir/wheels/$key"
  wheel=$(ls "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    build_dir=$(mktemp -d)
    if [ "$with_cuda" = 1 ]; then
      step_log="$log_dir/mmcv-build-$key.log"
    else
      step_log="$log_dir/mmcv-build.log"
    fi
    : >"$step_log"
    echo "no cached wheel for $key: building mmcv from source"
    torch_std=$(torch_cxx_std)
    if [ "$with_cuda" = 1 ]; then
      n_arch=$(echo "$arch_list" | tr ';' '\n' | wc -l)
      echo "(CPU and CUDA ops for $n_arch architecture(s): about 80" \
        "CPU-minutes for one, 40 minutes on 2 free cores, more for each" \
        "further one; full log: $step_log)"
      setup_cuda_toolkit
    else
      echo "(about 16 minutes on 2 cores; full log: $step_log)"
    fi
    pip download -q --no-deps --no-binary :all: --no-build-isolation \
      -d "$build_dir" "mmcv==$MMCV_VERSION" >>"$step_log" 2>&1
    tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
    src="$build_dir/mmcv-$MMCV_VERSION"
    patch_mmcv_std "$src/setup.py"
    # csrc/pytorch/*.cpp and csrc/pytorch/cpu/*.cpp, and with CUDA
    # csrc/pytorch/cuda/*.cu and *.cpp.
    n_sources=$(ls "$src"/mmcv/ops/csrc/pytorch/*.cpp \
      "$src"/mmcv/ops/csrc/pytorch/cpu/*.cpp | wc -l)
    if [ "$with_cuda" = 1 ]; then
      n_sources=$((n_sources + $(ls "$src"/mmcv/ops/csrc/pytorch/cuda/*.cu \
        "$src"/mmcv/ops/csrc/pytorch/cuda/*.cpp | wc -l)))
    fi
    (
      while sleep 30; do
        n=$(find "$src" -name '*.o' 2>/dev/null | wc -l)
        printf '  compiling mmcv ops: %d of about %d sources done (%ds)\n' \
          "$n" "$n_sources" "$((SECONDS - started))"
      done
    ) &
    progress_pid=$!
    trap 'kill $progress_pid 2>/dev/null || true' EXIT
    (
      if [ "$with_cuda" = 1 ]; then
        export FORCE_CUDA=1 CUDA_HOME="$cuda_home" PATH="$cuda_home/bin:$PATH"
        export TORCH_CUDA_ARCH_LIST="$arch_list"
        export CPATH="$cuda_cpath" LIBRARY_PATH="$cuda_library_path"
      elif [ "${FORCE_CUDA:-}" = 0 ]; then
        # mmcv's setup.py builds CUDA ops whenever it sees a GPU.
        export CUDA_VISIBLE_DEVICES=
      fi
      MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        pip wheel --no-deps --no-build-isolation -w "$build_dir/dist" "$src" \
        >>"$step_log" 2>&1
    )
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
  # An mmcv of the same version (e.g. built without CUDA) would be kept.
  [ "$with_cuda" = 0 ] || "$py" -m pip uninstall -q -y mmcv >"$step_log" 2>&1
  pip install -q "$wheel" >"$step_log" 2>&1
  read -r _ _ _ mmcv_state <<<"$(probe)"
  if [ "$mmcv_state" = none ]; then
    echo "mmcv installed but mmcv.ops does not import" >&2; false
  elif [ "$with_cuda" = 1 ] && [ "${mmcv_state#cuda}" != "$torch_cuda" ]; then
    echo "mmcv installed without CUDA $torch_cuda ops ($mmcv_state)" >&2; false
  fi
  echo "installed mmcv $MMCV_VERSION with $(ops_built "$mmcv_state")"
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

# One line, read whole before it runs: nothing after it is read, even if
# this file changes meanwhile.
main "$@"; exit
