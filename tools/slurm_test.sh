#!/usr/bin/env bash
# Evaluate through Slurm (see slurm_train.sh for the environment).
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options...]
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
here=$(cd "$(dirname "$0")" && pwd)
# The project's .venv unless PYTHON is set or an environment is active.
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] &&
  [ -x "$here/../.venv/bin/python" ]; then
  PYTHON="$here/../.venv/bin/python"
fi
# shellcheck disable=SC2086
srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  ${GRES:+--gres="$GRES"} \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$here/test.py" "$CONFIG" "$CHECKPOINT" \
  --launcher slurm "$@"
