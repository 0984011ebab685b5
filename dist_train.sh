#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed.launch is deprecated); PORT chooses the rendezvous port.
# Without CUDA every process runs on the CPU and the process group uses gloo.
#
#   sh dist_train.sh CONFIG GPUS [train.py arguments...]
#   env: PORT (29500), NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PYTHON (python, else python3)
set -e
if [ "$#" -lt 2 ]; then
    echo "usage: sh dist_train.sh CONFIG GPUS [train.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
ROOT=$(cd "$(dirname "$0")" && pwd)
shift 2  # the rest are passed through (POSIX sh: `sh dist_train.sh` works with dash too)
# a missing config, GPUS=abc or 0: one line and status 2 before torchrun starts (the same checks as the
# Python entry points, mmcv_custom/cli/errors.py)
"$PYTHON" "$ROOT/mmcv_custom/cli/errors.py" dist_train.sh "CONFIG=$CONFIG" "GPUS=$GPUS" "NNODES=$NNODES" || exit 2

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/train.py" \
    "$CONFIG" \
    --launcher pytorch "$@"
