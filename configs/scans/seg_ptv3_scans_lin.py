# seg_ptv3_scans_ft.py with the backbone frozen: a linear head trained by
# SGD. tools/transfer.py fits its linear-probe rows by L-BFGS instead.
_base_ = ['./seg_ptv3_scans_ft.py']

model = dict(freeze_backbone=True)
optim_wrapper = dict(optimizer=dict(lr=1e-2))
