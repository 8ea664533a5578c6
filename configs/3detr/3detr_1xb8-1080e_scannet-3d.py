# 3DETR (Misra et al., ICCV 2021) on ScanNet v2, 18 classes, the paper's 1080-epoch schedule.
# mmdet3d has no 3DETR: the model is concept_distill's (models/threedetr). The data settings
# inherit mmdet3d's ScanNet detection config and change what 3DETR needs: xyz only (no
# height), no instance/semantic masks, RandomCuboid crop, one pass over the data per epoch.
_base_ = [
    'mmdet3d::_base_/datasets/scannet-3d.py',
    './_base_/3detr.py',
    './_base_/schedule-adamw-cosine-1080e.py',
    '../_base_/default_runtime.py',
]

backend_args = None
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True,
         backend_args=backend_args),
    dict(type='GlobalAlignment', rotation_axis=2),
    dict(type='RandomCuboid3D', min_points=30000, aspect=0.8, min_crop=0.5, max_crop=1.0),
    dict(type='PointSample', num_points=40000),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
         scale_ratio_range=[1.0, 1.0], shift_height=False),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args),
    dict(type='GlobalAlignment', rotation_axis=2),
    dict(type='MultiScaleFlipAug3D', img_scale=(1333, 800), pts_scale_ratio=1, flip=False,
         transforms=[
             dict(type='GlobalRotScaleTrans', rot_range=[0, 0], scale_ratio_range=[1., 1.],
                  translation_std=[0, 0, 0]),
             dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
                  flip_ratio_bev_vertical=0.5),
             dict(type='PointSample', num_points=40000),
         ]),
    dict(type='Pack3DDetInputs', keys=['points']),
]

# The paper's epoch is one pass over the 1201 training scans (mmdet3d's base repeats 5x).
train_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True,
    dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                    save_best='mAP_0.25', rule='greater'))
