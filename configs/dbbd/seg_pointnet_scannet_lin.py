# Linear probe: the pre-trained backbone frozen (eval mode, no gradients,
# weights unchanged), only the linear head trained.
_base_ = ['./seg_pointnet_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
