# MinkUNet34 (w32, spconv) on S3DIS semantic segmentation (13 classes, Area 5 held out), from
# scratch. 2 cm voxels (not the 5 cm of the MinkowskiNet paper) keep the scale of the ScanNet
# pre-training, so the pre-trained variant transfers at the resolution it learnt.
_base_ = [
    '../_base_/datasets/s3dis-seg-voxel.py',
    './_base_/minkunet34-w32-spconv_indoor-seg.py',
]

num_classes = 13
model = dict(decode_head=dict(num_classes=num_classes, ignore_index=num_classes))

lr = 0.05
max_epochs = 600  # S3DIS has 204 training rooms: ~13 iterations per epoch
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 5, eta_min=lr * 1e-3, by_epoch=True,
         begin=5, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=20)
