# The same SpUNet segmentation network as seg_spunet_scannet_ft.py, from
# random weights: the baseline pre-training has to beat.
_base_ = ['./seg_spunet_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
