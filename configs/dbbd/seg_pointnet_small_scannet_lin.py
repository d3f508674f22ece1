# Small mode of seg_pointnet_scannet_lin.py (frozen backbone, linear head).
_base_ = ['./seg_pointnet_small_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
