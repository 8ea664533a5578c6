# S3DIS semantic segmentation (13 classes; train Areas 1-4 and 6, test Area 5) on whole rooms,
# for voxel models (MinkUNet). Same changes to mmdet3d's s3dis-seg.py as scannet-seg-voxel.py:
# no 1 m block sampling and no resampled scene indices, indoor augmentations instead.
_base_ = ['mmdet3d::_base_/datasets/s3dis-seg.py']

custom_imports = dict(imports=['concept_distill'], allow_failed_imports=False)
# mmdet3d's dataset refuses to train without resampled `scene_idxs`; this subclass (in
# concept_distill) visits every room once per epoch instead.
dataset_type = 'S3DISWholeSceneSegDataset'
backend_args = None
load_points = dict(
    type='LoadPointsFromFile',
    coord_type='DEPTH',
    shift_height=False,
    use_color=True,
    load_dim=6,
    use_dim=[0, 1, 2, 3, 4, 5],
    backend_args=backend_args)
load_seg = dict(
    type='LoadAnnotations3D',
    with_bbox_3d=False,
    with_label_3d=False,
    with_mask_3d=False,
    with_seg_3d=True,
    backend_args=backend_args)

train_pipeline = [
    load_points,
    load_seg,
    dict(type='PointSegClassMapping'),
    dict(
        type='GlobalRotScaleTrans',
        rot_range=[-3.14159265, 3.14159265],
        scale_ratio_range=[0.9, 1.1],
        translation_std=[0.1, 0.1, 0.1]),
    dict(
        type='RandomFlip3D',
        sync_2d=False,
        flip_ratio_bev_horizontal=0.5,
        flip_ratio_bev_vertical=0.5),
    dict(type='RandomJitterPoints', jitter_std=[0.005, 0.005, 0.005], clip_range=[-0.02, 0.02]),
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])
]
# PointSegClassMapping here too, so the evaluator scores 0..12 labels (see scannet-seg-voxel.py).
test_pipeline = [
    load_points,
    load_seg,
    dict(type='PointSegClassMapping'),
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='Pack3DDetInputs', keys=['points'])
]

train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    dataset=dict(type=dataset_type, pipeline=train_pipeline, scene_idxs=None))
test_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline, scene_idxs=None))
val_dataloader = test_dataloader
