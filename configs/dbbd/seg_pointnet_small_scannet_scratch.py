# Small mode of seg_pointnet_scannet_scratch.py (random weights).
_base_ = ['./seg_pointnet_small_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
