#!/usr/bin/env bash
# Training on a Slurm cluster: one task per GPU, started by srun (the original's arguments and defaults).
#
#   GPUS=16 sh slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]
#   env: GPUS (8: tasks in all), GPUS_PER_NODE (8: tasks per node), CPUS_PER_TASK (10), SRUN_ARGS (extra srun
#        arguments, e.g. the original's cluster-specific "--quotatype=spot"), PYTHON (python, else python3),
#        GPU_GRES (auto: --gres=gpu:GPUS_PER_NODE only on partitions with GPUs; 1: always; 0: never),
#        MASTER_PORT (29500, for the tasks' process group),
#        REQUEUE (0; 1: submit with sbatch as a requeueable batch job: on SIGUSR1, sent REQUEUE_SIGNAL_S (90) seconds
#        before the time limit or by `scancel --signal=USR1 JOB`, training saves a checkpoint and requeues the job,
#        which then continues with --auto-resume; output in WORK_DIR/slurm-JOBID.out), SBATCH_ARGS (more sbatch
#        options with REQUEUE=1, e.g. "--time=4:00:00")
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
# inside the REQUEUE=1 batch job $0 is Slurm's copy of this script: the repository comes from the submitting shell
ROOT=${SLURM_TRAIN_ROOT:-$(cd "$(dirname "$0")" && pwd)}
REQUEUE=${REQUEUE:-0}
REQUEUE_SIGNAL_S=${REQUEUE_SIGNAL_S:-90}
shift 4  # the rest are passed through (POSIX sh: `sh slurm_train.sh` works with dash too)

. "$ROOT/tools/slurm_srun.sh"
slurm_check_file 'config file' "$CONFIG"
[ -n "$WORK_DIR" ] || slurm_fail "WORK_DIR is empty"
case $REQUEUE in
    0) ;;
    1)
        slurm_check_count REQUEUE_SIGNAL_S "$REQUEUE_SIGNAL_S"
        if [ -z "${SLURM_TRAIN_IN_BATCH:-}" ]; then  # the submitting shell: submit this script as the batch job
            slurm_check_input
            slurm_choose_gres
            command -v sbatch >/dev/null || slurm_fail "sbatch not found on PATH (REQUEUE=1 submits a batch job)"
            mkdir -p "$WORK_DIR" || slurm_fail "cannot create WORK_DIR $WORK_DIR"
            export SLURM_TRAIN_IN_BATCH=1 SLURM_TRAIN_ROOT="$ROOT" REQUEUE GPUS GPUS_PER_NODE CPUS_PER_TASK GPU_GRES
            export PYTHON SRUN_ARGS
            # shellcheck disable=SC2086
            set -x
            exec sbatch -p "$PARTITION" --job-name="$JOB_NAME" $GRES_OPTION --ntasks="$GPUS" \
                --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
                --requeue --signal="USR1@$REQUEUE_SIGNAL_S" --open-mode=append --output="$WORK_DIR/slurm-%j.out" \
                ${SBATCH_ARGS:-} "$ROOT/slurm_train.sh" "$PARTITION" "$JOB_NAME" "$CONFIG" "$WORK_DIR" "$@"
        fi
        # the batch job (first start or requeued): continue from the newest checkpoint, save and requeue on USR1
        set -- "$@" --auto-resume --requeue-on-signal
        ;;
    *) slurm_fail "REQUEUE=$REQUEUE: expected 0 or 1" ;;
esac
slurm_srun "$ROOT/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher="slurm" "$@"
