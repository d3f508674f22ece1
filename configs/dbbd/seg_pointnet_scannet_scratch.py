# The same network as seg_pointnet_scannet_ft.py, from random weights: the
# baseline pre-training has to beat.
_base_ = ['./seg_pointnet_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
