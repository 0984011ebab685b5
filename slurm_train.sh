#!/usr/bin/env bash
# Training on a Slurm cluster: one task per GPU, started by srun (the original's arguments and defaults).
#
#   GPUS=16 sh slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]
#   env: GPUS (8: tasks in all), GPUS_PER_NODE (8: tasks per node), CPUS_PER_TASK (10), SRUN_ARGS (extra srun
#        arguments, e.g. the original's cluster-specific "--quotatype=spot"), PYTHON (python, else python3),
#        GPU_GRES (auto: --gres=gpu:GPUS_PER_NODE only on partitions with GPUs; 1: always; 0: never),
#        MASTER_PORT (29500, for the tasks' process group)
# On a CPU-only partition the same command runs GPUS processes on the CPU (gloo), e.g.
#   GPUS=2 GPUS_PER_NODE=2 CPUS_PER_TASK=1 sh slurm_train.sh debug demo configs/demo/mask_rcnn_internimage_demo_shapes.py WD
if [ "$#" -lt 4 ]; then
    echo "usage: sh slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]" >&2
    exit 2
fi
PROG=slurm_train.sh
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-10}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
ROOT=$(cd "$(dirname "$0")" && pwd)
shift 4  # the rest are passed through (POSIX sh: `sh slurm_train.sh` works with dash too)

. "$ROOT/tools/slurm_srun.sh"
slurm_check_file 'config file' "$CONFIG"
[ -n "$WORK_DIR" ] || slurm_fail "WORK_DIR is empty"
slurm_srun "$ROOT/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher="slurm" "$@"
