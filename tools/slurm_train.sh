#!/usr/bin/env bash
# Train through Slurm: one task per GPU, GPUS_PER_NODE per node.
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [options...]
# Environment: GPUS (tasks in all, default 8), GPUS_PER_NODE (tasks per
# node, default 8), CPUS_PER_TASK (default 5), GRES (default
# gpu:$GPUS_PER_NODE; empty on CPU-only partitions: the tasks then train
# with gloo), SRUN_ARGS (extra srun arguments), PYTHON.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [train.py options]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086
srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  ${GRES:+--gres="$GRES"} \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$here/train.py" "$CONFIG" --launcher slurm "$@"
