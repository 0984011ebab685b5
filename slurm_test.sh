#!/usr/bin/env bash
# Testing on a Slurm cluster: one task per GPU, started by srun (the original's arguments and defaults).
#
#   GPUS=8 sh slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]   e.g. ... --eval bbox segm
#   env: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (extra srun arguments), PYTHON (python, else python3)
set -x
if [ "$#" -lt 4 ]; then
    echo "usage: sh slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
ROOT=$(cd "$(dirname "$0")" && pwd)
shift 4  # the rest are passed through (POSIX sh: `sh slurm_test.sh` works with dash too)

# SRUN_ARGS is split into words on purpose: it holds several srun options.
# shellcheck disable=SC2086
PYTHONPATH="$ROOT":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ROOT/test.py" "${CONFIG}" "${CHECKPOINT}" --launcher="slurm" "$@"
