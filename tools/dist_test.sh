#!/usr/bin/env bash
# Evaluate on N processes per node with torchrun (see dist_train.sh).
#   bash tools/dist_test.sh CONFIG CHECKPOINT N [test.py options...]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES_PER_NODE [test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
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
  "$here/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
