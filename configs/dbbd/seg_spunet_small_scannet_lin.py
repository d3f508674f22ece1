# Small mode of seg_spunet_scannet_lin.py (frozen SpUNet, linear head).
_base_ = ['./seg_spunet_small_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
