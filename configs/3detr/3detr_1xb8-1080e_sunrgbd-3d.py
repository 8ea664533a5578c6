# 3DETR on SUN RGB-D v1 (10 classes), the paper's 1080-epoch schedule. Same model as ScanNet
# except: 128 queries, 12 heading bins (class + residual), SUN RGB-D matcher costs and loss
# weights, lr 7e-4. Data settings inherit mmdet3d's SUN RGB-D config with xyz only.
_base_ = [
    'mmdet3d::_base_/datasets/sunrgbd-3d.py',
    './_base_/3detr.py',
    './_base_/schedule-adamw-cosine-1080e.py',
    '../_base_/default_runtime.py',
]

num_classes = 10
model = dict(
    bbox_head=dict(
        num_classes=num_classes,
        num_queries=128,
        num_heading_bins=12,
        loss=dict(
            matcher=dict(cls_cost=1.0, objectness_cost=5.0, center_cost=5.0, giou_cost=3.0),
            no_object_weight=0.1, giou_weight=0.0)))

backend_args = None
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args),
    dict(type='LoadAnnotations3D'),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.523599, 0.523599],
         scale_ratio_range=[0.85, 1.15], shift_height=False),
    dict(type='RandomCuboid3D', min_points=30000, aspect=0.8, min_crop=0.5, max_crop=1.0),
    dict(type='PointSample', num_points=20000),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args),
    dict(type='MultiScaleFlipAug3D', img_scale=(1333, 800), pts_scale_ratio=1, flip=False,
         transforms=[
             dict(type='GlobalRotScaleTrans', rot_range=[0, 0], scale_ratio_range=[1., 1.],
                  translation_std=[0, 0, 0]),
             dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5),
             dict(type='PointSample', num_points=20000),
         ]),
    dict(type='Pack3DDetInputs', keys=['points']),
]
train_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True,
    dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

lr = 7e-4
max_epochs = 1080
warmup_epochs = 9
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                    save_best='mAP_0.25', rule='greater'))
