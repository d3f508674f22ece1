#!/usr/bin/env bash
# Training on a Slurm cluster: srun starts one task per process and
# tools/train.py --launcher slurm reads its rank from Slurm's variables.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# Environment: GPUS (total processes, 8), GPUS_PER_NODE (8; 0 on CPU-only
# nodes: no --gres is requested and the processes train with gloo),
# CPUS_PER_TASK (5), SRUN_ARGS (extra srun options), MASTER_PORT (29500;
# choose another when two jobs share a node), PYTHON (python).
#
#   GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh gpu dbbd \
#       configs/dbbd/dbbd_scannet.py work_dirs/dbbd_scannet --amp
set -x

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4

GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ "$GPUS_PER_NODE" -gt 0 ]; then
    TASKS_PER_NODE=$GPUS_PER_NODE
    GRES="--gres=gpu:${GPUS_PER_NODE}"
else
    TASKS_PER_NODE=${TASKS_PER_NODE:-1}
    GRES=""
fi

export MASTER_PORT=${MASTER_PORT:-29500}
PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${TASKS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$HERE/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher=slurm "$@"
