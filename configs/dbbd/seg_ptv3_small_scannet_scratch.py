# Small mode of seg_ptv3_scannet_scratch.py (random initialisation).
_base_ = ['./seg_ptv3_small_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
