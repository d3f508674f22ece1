#!/usr/bin/env bash
# Multi-process training through torchrun (torch.distributed.run).
#
#   tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
#
# One node: NUM_PROCESSES processes (one per GPU; on a CPU-only machine they
# train with gloo). Several nodes: run it on every node with the same
# NNODES, MASTER_ADDR and MASTER_PORT, and NODE_RANK=0..NNODES-1:
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \
#       tools/dist_train.sh CONFIG 8 --work-dir work_dirs/x
#
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1),
# MASTER_PORT or PORT (29500), PYTHON (python).
set -e

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCESSES [train.py args...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-${PORT:-29500}}
PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$MASTER_PORT" \
    --nproc_per_node="$NPROC" \
    "$HERE/train.py" \
    "$CONFIG" \
    --launcher pytorch "$@"
