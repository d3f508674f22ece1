# dbbd_spunet_small_demo.py with masked views (masked scene contrast, MSC): in each
# training view, 40% of the 10 cm patches have their input features replaced
# by a learned token before SpUNet reads them (points and the region tree
# stay, so both views keep the same regions). Validation views stay
# unmasked.
_base_ = ['./dbbd_spunet_small_demo.py']

model = dict(backbone=dict(mask_token=True))
masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.1)]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2,
         transforms=_base_.train_view + masking),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))
