#!/usr/bin/env bash
# Testing on a Slurm cluster: one task per GPU, started by srun (the original's arguments and defaults).
#
#   GPUS=8 sh slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]   e.g. ... --eval bbox segm
#   env: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (extra srun arguments), PYTHON (python, else
#        python3), GPU_GRES (auto, 1 or 0: as in slurm_train.sh), MASTER_PORT (29500)
if [ "$#" -lt 4 ]; then
    echo "usage: sh slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]" >&2
    exit 2
fi
PROG=slurm_test.sh
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

. "$ROOT/tools/slurm_srun.sh"
slurm_check_file 'config file' "$CONFIG"
slurm_check_file 'checkpoint' "$CHECKPOINT"
slurm_srun "$ROOT/test.py" "$CONFIG" "$CHECKPOINT" --launcher="slurm" "$@"
