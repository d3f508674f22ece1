# self_distill_ptv3_small_scannet.py on the synthetic demo rooms, as
# self_distill_spunet_small_demo.py is for the SpUNet (10 epochs); its
# student loads into seg_ptv3_small_demo_ft.py:
#   python tools/train.py configs/self_distill/self_distill_ptv3_small_demo.py
#   python tools/train.py configs/dbbd/seg_ptv3_small_demo_ft.py \
#       --cfg-options pretrained=work_dirs/self_distill_ptv3_small_demo/epoch_10.pth
_base_ = [
    './self_distill_ptv3_small_scannet.py',
    '../_base_/datasets/dbbd_demo.py',  # demo_data: the rooms
]

data_root = _base_.demo_data.demo_root
train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))

model = dict(momentum=0.9, warmup_teacher_temp_iters=4)
train_cfg = dict(max_epochs=10, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
