# Small mode of seg_spunet_scannet_scratch.py (random initialisation).
_base_ = ['./seg_spunet_small_scannet_ft.py']

pretrained = None
model = dict(pretrained=None)
