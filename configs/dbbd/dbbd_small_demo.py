# The demo: small mode on synthetic rooms, no download needed. On first use
# the rooms are generated and prepared into data/dbbd_demo (a one-off, with a
# progress bar) through the same tools/create_data.py path as real data
# (the rooms and what another data_root does: _base_/datasets/dbbd_demo.py).
_base_ = [
    './dbbd_small_scannet.py',
    '../_base_/datasets/dbbd_demo.py',  # demo_data: the rooms
]

data_root = _base_.demo_data.demo_root
train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))

# 10 epochs, validation and a checkpoint every epoch (the cosine schedule
# follows max_epochs).
train_cfg = dict(max_epochs=10, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
