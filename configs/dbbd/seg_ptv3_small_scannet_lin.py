# Small mode of seg_ptv3_scannet_lin.py (frozen PTv3, linear head).
_base_ = ['./seg_ptv3_small_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
