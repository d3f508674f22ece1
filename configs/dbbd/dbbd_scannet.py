# DBBD pre-training on ScanNet v2, full size (method defaults).
_base_ = [
    '../_base_/models/dbbd_pointnet.py',
    '../_base_/datasets/scannet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]
