# The same PTv3 segmentation network as seg_ptv3_scannet_ft.py, from random
# weights: the baseline pre-training has to beat.
_base_ = ['./seg_ptv3_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
