# SelfDistill (Sonata-style point self-distillation) on SpUNet, full size:
# the strongest known baseline, same backbone and data as DBBD and
# SceneContrast. A student and its EMA teacher; global and local crops of
# each scene (the dataset pipeline of the leaf configs); the student reads
# every view with masked patches, the teacher the global views unmasked;
# prototype heads, the teacher's scores centred by Sinkhorn-Knopp; the
# loss over matched points. The SpUNet is read encoder-only (readout=
# 'upcast': each encoder stage carried back to the points), its state dict
# the full SpUNet's, so pretrained= loads the student into the seg_spunet
# configs (decoder as initialised).
model = dict(
    type='SelfDistill',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    in_channels=3,  # raw point features: normals (feat_keys sets it)
    backbone=dict(
        type='SpUNet',
        base_channels=32,
        channels=(32, 64, 128, 256, 256, 128, 96, 96),
        layers=(2, 3, 4, 6, 2, 2, 2, 2),
        voxel_size=0.02,
        backend='torch',
        readout='upcast'),
    head=dict(type='PrototypeHead', hidden_channels=2048,
              bottleneck_channels=256, num_prototypes=4096),
    loss=dict(type='PrototypeDistillLoss', student_temp=0.1,
              sinkhorn_iters=3),
    num_global_views=2,
    num_samples=1024,  # matched points per (student, teacher) view pair
    teacher_temp=0.07,
    warmup_teacher_temp=0.04,
    warmup_teacher_temp_iters=1500,
    momentum=0.994,
    final_momentum=1.0,
    momentum_iters=None,  # the run's length
    mask_token=True,
)
