# MinkUNet34 (w32) with the spconv backend for indoor semantic segmentation: whole scenes
# voxelised at 2 cm, SGD + warm-up + cosine. mmdet3d ships MinkUNet configs for SemanticKITTI
# only; this reuses its model base and changes what differs indoors. Dataset configs set
# `num_classes` (decode_head) and the epochs.
_base_ = [
    'mmdet3d::_base_/models/minkunet.py',
    '../../_base_/default_runtime.py',
]

voxel_size = 0.02
num_classes = 20

model = dict(
    data_preprocessor=dict(
        voxel_type='minkunet',
        batch_first=True,  # spconv wants (batch, x, y, z) coordinates
        max_voxels=None,  # whole scenes: no random voxel dropping
        voxel_layer=dict(
            point_cloud_range=[-100, -100, -20, 100, 100, 20],  # unused by 'minkunet'
            voxel_size=[voxel_size, voxel_size, voxel_size])),
    backbone=dict(
        in_channels=6,  # x, y, z, r, g, b of each voxel's first point
        encoder_blocks=[2, 3, 4, 6],
        sparseconv_backend='spconv'),
    decode_head=dict(
        num_classes=num_classes,
        ignore_index=num_classes,
        loss_decode=dict(type='mmdet.CrossEntropyLoss', avg_non_ignore=True)))

# SGD + one-cycle-like cosine, as sparse-conv indoor segmentation is usually trained.
lr = 0.05
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True),
    clip_grad=None)
max_epochs = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 5, eta_min=lr * 1e-3, by_epoch=True,
         begin=5, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# 8 GPUs x 2 scenes
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                                     save_best='miou', rule='greater'))
