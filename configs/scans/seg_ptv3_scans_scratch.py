# seg_ptv3_scans_ft.py from a random initialisation (same budget).
_base_ = ['./seg_ptv3_scans_ft.py']

pretrained = None
model = dict(pretrained=None)
