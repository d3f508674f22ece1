#!/usr/bin/env bash
# The real-scans transfer table in one command: prepare a folder of
# labelled PLY/NPY/NPZ scans (a deterministic 75/25 train/val split), then
# pre-train DBBD on SpUNet with an EMA teacher
# (configs/scans/dbbd_ema_spunet_scans.py), fit its linear probe, fine-tune
# it and train the same SpUNet from scratch on the same labelled scenes,
# beside the
# floors (majority class, probe on raw features, probe on the untrained
# SpUNet). Configs: configs/scans/.
#
#   tools/scans_transfer.sh PLY_FOLDER [transfer.py args...]
#
# e.g. the README's table (3 seeds, 16 then 8 labelled scenes):
#   tools/scans_transfer.sh ../shared/data/real_scans --seeds 0 1 2
#   tools/scans_transfer.sh ../shared/data/real_scans --seeds 0 1 2 \
#       --labelled-scenes 8
#
# Environment: DATA (data/scans: the prepared scenes), WORK
# (work_dirs/transfer_scans), PYTHON (python), OMP_NUM_THREADS (1: on a
# 2-core CPU one thread ran 10 segmentation epochs of these configs in 68 s
# against 95 s with two, and a pre-training epoch as fast), JOBS (2: runs
# at once, tools/transfer.py --jobs; two one-thread runs took 74 s where
# one took 68 s; the table is the same). Set them to use more cores.
# Arguments after the folder go to tools/transfer.py and override the
# defaults below (--labelled-scenes 16, --seeds 0, --jobs, DBBD on SpUNet
# and scratch).
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
JOBS=${JOBS:-2}

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 PLY_FOLDER [transfer.py args...] (PLY_FOLDER must be a folder of labelled scans)" >&2
    exit 2
fi
SRC=$1
shift
DATA=${DATA:-data/scans}
WORK=${WORK:-work_dirs/transfer_scans}
PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"

# prepared scenes are kept: a second call skips them
"$PYTHON" "$HERE/create_data.py" --src "$SRC" --out "$DATA" --layout files \
    --val-ratio 0.25 --no-progress
# defaults first: argparse lets a later --seeds / --labelled-scenes win
"$PYTHON" "$HERE/transfer.py" \
    --pretrain-configs "$ROOT/configs/scans/dbbd_ema_spunet_scans.py" none \
    --seg-configs "$ROOT/configs/scans/seg_{family}_scans_{protocol}.py" \
    --labelled-scenes 16 --seeds 0 --jobs "$JOBS" --work-dir "$WORK" \
    --cfg-options "data_root=$DATA" "$@"
