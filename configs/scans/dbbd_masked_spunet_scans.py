# dbbd_spunet_scans.py with masked views (as MSC masks): in each training
# view, 40% of the 0.4 m patches have their input features (colour,
# normals, intensity) replaced by a learned token before SpUNet reads them;
# the points and the region tree stay, so both views keep their regions.
# The network must infer a masked patch's appearance from its
# surroundings instead of copying it (a lever against the "geometric
# shortcut" of low-level cues).
_base_ = ['./dbbd_spunet_scans.py']

model = dict(backbone=dict(mask_token=True))
masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.4)]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2,
         transforms=_base_.train_view + masking),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))
