# dbbd_ptv3_small_scannet.py on the synthetic demo rooms (generated and
# prepared into data/dbbd_demo on first use, as dbbd_small_demo.py does).
_base_ = [
    './dbbd_ptv3_small_scannet.py',
    '../_base_/datasets/dbbd_demo.py',  # demo_data: the rooms
]

data_root = _base_.demo_data.demo_root
train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))

train_cfg = dict(max_epochs=10, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
