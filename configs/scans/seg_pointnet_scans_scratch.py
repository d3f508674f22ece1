# seg_pointnet_scans_ft.py from a random initialisation (same budget).
_base_ = ['./seg_pointnet_scans_ft.py']

pretrained = None
model = dict(pretrained=None)
