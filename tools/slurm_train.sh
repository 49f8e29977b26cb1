#!/usr/bin/env bash
# Train through Slurm: one task per GPU, GPUS_PER_NODE per node.
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [options...]
# Environment: GPUS (tasks in all, default 8), GPUS_PER_NODE (tasks per
# node, default 8), CPUS_PER_TASK (default 5), GRES (default
# gpu:$GPUS_PER_NODE; empty on CPU-only partitions: the tasks then train
# with gloo), SRUN_ARGS (extra srun arguments), SIGNAL_SECONDS (default
# 300), PYTHON (default: the active environment's python, else the
# project's .venv, else python).
#
# Pre-emption: Slurm is asked to send SIGUSR1 SIGNAL_SECONDS before the
# time limit (--signal); on SIGUSR1 or SIGTERM the training finishes its
# iteration, writes a checkpoint and exits with status 75. Inside a batch
# job (sbatch, SLURM_JOB_ID set) this script then requeues the job
# (scontrol requeue; submit with --requeue to allow it) and the requeued
# job, started again with this same command, resumes from the work dir's
# newest checkpoint by itself.
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
SIGNAL_SECONDS=${SIGNAL_SECONDS:-300}
PREEMPTED=75
here=$(cd "$(dirname "$0")" && pwd)
# The project's .venv unless PYTHON is set or an environment is active.
if [ -z "${PYTHON:-}" ] && [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] &&
  [ -x "$here/../.venv/bin/python" ]; then
  PYTHON="$here/../.venv/bin/python"
fi
# A requeued job continues the run it belongs to.
resume=()
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [[ " $* " != *" --resume"* ]]; then
  echo "slurm_train.sh: requeued job (restart ${SLURM_RESTART_COUNT}): resuming" >&2
  resume=(--resume)
fi
# Slurm's SIGTERM (pre-emption) reaches this shell too: wait for the
# training, which stops with a checkpoint, instead of dying before it.
trap 'echo "slurm_train.sh: SIGTERM; waiting for the training to stop" >&2' TERM
status=0
# shellcheck disable=SC2086
srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  ${GRES:+--gres="$GRES"} \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  --signal=USR1@"$SIGNAL_SECONDS" \
  ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$here/train.py" "$CONFIG" --launcher slurm \
  "${resume[@]}" "$@" || status=$?
if [ "$status" -eq "$PREEMPTED" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "slurm_train.sh: pre-empted with a checkpoint; requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
  else
    echo "slurm_train.sh: pre-empted with a checkpoint; not in a batch job," \
      "so nothing to requeue: run the same command with --resume" >&2
  fi
fi
exit "$status"
