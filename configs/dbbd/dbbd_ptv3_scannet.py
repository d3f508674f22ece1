# DBBD pre-training of a Point Transformer V3 on ScanNet v2, full size
# (Pointcept's ScanNet PT-v3m1 settings, 2 cm grid; see docs/ptv3.md).
_base_ = [
    '../_base_/models/dbbd_ptv3.py',
    '../_base_/datasets/scannet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]
