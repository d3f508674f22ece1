# Small mode of self_distill_ptv3_scannet.py: self_distill_spunet_small_
# scannet.py (small heads, data and views) with the small PTv3 of
# dbbd_ptv3_small_scannet.py, so its student loads into
# seg_ptv3_small_scannet_ft.py.
_base_ = [
    './self_distill_spunet_small_scannet.py',
    '../_base_/models/ptv3.py',
]

model = dict(backbone=dict(_base_.ptv3_small, _delete_=True))
