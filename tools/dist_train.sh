#!/usr/bin/env bash
# Train on N processes per node with torchrun (GPUs with NCCL; without GPUs,
# CPU processes with gloo).
#   bash tools/dist_train.sh CONFIG N [train.py options...]
# Several nodes: run on every node with NNODES, NODE_RANK, MASTER_ADDR and
# PORT set (the same PORT and MASTER_ADDR everywhere).
# PYTHON: the interpreter (default: the active environment's, else the
# project's .venv, else python).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NUM_PROCESSES_PER_NODE [train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# The project's .venv unless PYTHON is set or an environment is active.
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] &&
  [ -x "$here/../.venv/bin/python" ]; then
  PYTHON="$here/../.venv/bin/python"
fi
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$here/train.py" "$CONFIG" --launcher pytorch "$@"
