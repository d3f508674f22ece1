# scannet.py with MSC's masking of the training views: in each, 40% of the
# 10 cm patches have their input features replaced by the model's learned
# token (points and the region tree stay, so both views keep the same
# regions); set ratio=0 for plain point contrast. Validation views stay
# unmasked.
_base_ = ['./scannet.py']

masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.1)]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2,
         transforms=_base_.train_view + masking),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))
