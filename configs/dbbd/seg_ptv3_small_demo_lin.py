# Linear probe on the demo rooms: the pre-trained PTv3 frozen, only the
# linear head trained.
_base_ = ['./seg_ptv3_small_demo_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
