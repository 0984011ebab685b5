#!/usr/bin/env bash
# Distributed testing with torchrun; without CUDA the processes run on the CPU with a gloo process group.
#
#   sh dist_test.sh CONFIG CHECKPOINT GPUS [test.py arguments...]    e.g. ... 8 --eval bbox segm
#   env: PORT (29511), NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PYTHON (python, else python3)
set -e
if [ "$#" -lt 3 ]; then
    echo "usage: sh dist_test.sh CONFIG CHECKPOINT GPUS [test.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29511}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
ROOT=$(cd "$(dirname "$0")" && pwd)
shift 3  # the rest are passed through (POSIX sh: `sh dist_test.sh` works with dash too)
# a missing config, GPUS=abc or 0: one line and status 2 before torchrun starts (the same checks as the
# Python entry points, mmcv_custom/cli/errors.py)
"$PYTHON" "$ROOT/mmcv_custom/cli/errors.py" dist_test.sh "CONFIG=$CONFIG" "CHECKPOINT=$CHECKPOINT" "GPUS=$GPUS" "NNODES=$NNODES" || exit 2

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "$@"
