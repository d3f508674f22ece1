# DBBD pre-training of a SpUNet on ScanNet v2, full size.
_base_ = [
    '../_base_/models/dbbd_spunet.py',
    '../_base_/datasets/scannet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]
