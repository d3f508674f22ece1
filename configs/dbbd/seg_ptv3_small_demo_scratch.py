# seg_ptv3_small_demo_ft.py from random weights (no pre-training).
_base_ = ['./seg_ptv3_small_demo_ft.py']

pretrained = None
model = dict(pretrained=None)
