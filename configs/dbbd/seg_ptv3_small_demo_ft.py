# The PTv3 segmentation demo: small mode on the synthetic rooms of
# dbbd_ptv3_small_demo.py (same folder, same rooms; prepared on first use),
# fine-tuned from the demo's pre-training:
#   python tools/train.py configs/dbbd/dbbd_ptv3_small_demo.py
#   python tools/train.py configs/dbbd/seg_ptv3_small_demo_ft.py
# Siblings: _lin (linear probe), _scratch (no pre-training).
_base_ = [
    './seg_ptv3_small_scannet_ft.py',
    '../_base_/datasets/dbbd_demo.py',  # demo_data: the rooms
]

pretrained = 'work_dirs/dbbd_ptv3_small_demo/epoch_10.pth'
model = dict(pretrained=pretrained)

# dbbd_ptv3_small_demo.py's rooms (the same demo_data: one folder for both)
data_root = _base_.demo_data.demo_root
train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
test_dataloader = val_dataloader

# 100 epochs of the 4 rooms (200 iterations), validation every 25, a
# checkpoint at the end, AdamW at 3e-3 (the cosine schedule follows
# max_epochs).
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs, val_interval=25)
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
