# Linear probe: the pre-trained SpUNet frozen (eval mode, no gradients,
# weights unchanged), only the linear head trained.
_base_ = ['./seg_spunet_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
