# What slurm_train.sh and slurm_test.sh share (POSIX sh, sourced by both): checks of the user's input, one line
# each, before anything is submitted, and the srun command line. The caller sets PROG, PARTITION, JOB_NAME, GPUS,
# GPUS_PER_NODE and CPUS_PER_TASK, and may set SRUN_ARGS, PYTHON and GPU_GRES.
#
# GPU_GRES: auto (default) requests --gres=gpu:GPUS_PER_NODE only when the partition's nodes have GPUs (sinfo's
# GRES column), so the same command runs on GPU and on CPU-only partitions (where the tasks use gloo on the CPU);
# 1 always requests the GPUs, 0 never does. Without sinfo, auto requests them (the original scripts always did).

slurm_fail() {
    echo "$PROG: error: $*" >&2
    exit 2
}

# The checks themselves are the entry points' and dist_*.sh's (mmcv_custom/cli/errors.py, standard library only): one
# checker, one wording. Each prints its one line and exits 2.
slurm_python_check() {  # slurm_python_check NAME=VALUE...
    [ -n "$PYTHON" ] || slurm_fail "no python or python3 on PATH (set PYTHON)"
    "$PYTHON" "$ROOT/mmcv_custom/cli/errors.py" "$PROG" "$@" || exit 2
}

slurm_check_count() {  # slurm_check_count NAME VALUE: a positive integer
    slurm_python_check "$1=$2"
}

slurm_check_file() {  # slurm_check_file 'config file'|checkpoint PATH: an existing file (URLs: the Python side)
    case $1 in
        'config file') slurm_python_check "CONFIG=$2" ;;
        *) slurm_python_check "CHECKPOINT=$2" ;;
    esac
}

slurm_check_input() {
    [ -n "$PARTITION" ] || slurm_fail "PARTITION is empty"
    [ -n "$JOB_NAME" ] || slurm_fail "JOB_NAME is empty"
    slurm_python_check "GPUS=$GPUS" "GPUS_PER_NODE=$GPUS_PER_NODE" "CPUS_PER_TASK=$CPUS_PER_TASK"
    case ${GPU_GRES:=auto} in
        auto | 0 | 1) ;;
        *) slurm_fail "GPU_GRES=$GPU_GRES: expected auto, 1 or 0" ;;
    esac
    [ -n "$PYTHON" ] || slurm_fail "no python or python3 on PATH (set PYTHON)"
    command -v srun >/dev/null || slurm_fail "srun not found on PATH (run this on a Slurm login node)"
}

# Sets GRES_OPTION: "--gres=gpu:N" or empty. Also stops at an unknown partition when sinfo can tell.
slurm_choose_gres() {
    GRES_OPTION="--gres=gpu:$GPUS_PER_NODE"
    partition_gres=''
    if command -v sinfo >/dev/null && partition_info=$(sinfo -h -p "$PARTITION" -o '%R %G' 2>/dev/null); then
        if [ -z "$partition_info" ]; then
            known=$(sinfo -h -o '%R' 2>/dev/null | sort -u | tr '\n' ' ')
            slurm_fail "partition $PARTITION does not exist (sinfo lists: ${known% })"
        fi
        partition_gres=$(printf '%s\n' "$partition_info" | cut -d' ' -f2- | sort -u | tr '\n' ' ')
    fi
    case $GPU_GRES in
        0) GRES_OPTION='' ;;
        auto)
            if [ -n "$partition_gres" ] && ! printf '%s' "$partition_gres" | grep -q 'gpu'; then
                GRES_OPTION=''
                echo "$PROG: partition $PARTITION has no GPUs (sinfo GRES: ${partition_gres% }):" \
                    "$GPUS tasks on the CPU, without --gres (GPU_GRES=1 requests GPUs anyway)" >&2
            fi
            ;;
    esac
}

# slurm_srun ENTRY_POINT ARGS...: one task per GPU (or per CPU process), all killed when one fails.
slurm_srun() {
    slurm_check_input
    slurm_choose_gres
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    # GRES_OPTION is empty or one word; SRUN_ARGS is split into words on purpose: it holds several srun options.
    # shellcheck disable=SC2086
    set -x
    exec srun -p "$PARTITION" \
        --job-name="$JOB_NAME" \
        $GRES_OPTION \
        --ntasks="$GPUS" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="$CPUS_PER_TASK" \
        --kill-on-bad-exit=1 \
        $SRUN_ARGS \
        "$PYTHON" -u "$@"
}
