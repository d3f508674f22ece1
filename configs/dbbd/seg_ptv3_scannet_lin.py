# Linear probe: the pre-trained PTv3 frozen (eval mode, no gradients,
# weights unchanged), only the linear head trained. For the encoder-only
# probe (every encoder stage's features carried back to the points, no
# decoder), add --cfg-options model.backbone.enc_mode=True (docs/ptv3.md).
_base_ = ['./seg_ptv3_scannet_ft.py']

model = dict(freeze_backbone=True, head=dict(type='LinearSegHead'))
