# ScanNet v2 semantic segmentation (20 classes) on whole scenes, for voxel models (MinkUNet).
# mmdet3d's scannet-seg.py samples 1.5 m patches of 8192 points for PointNet++; a sparse-conv
# model sees the whole scene instead, so the patch sampler and the resampled scene indices go,
# and indoor augmentations (rotation about z, scaling, flips, jitter) come in.
_base_ = ['mmdet3d::_base_/datasets/scannet-seg.py']

custom_imports = dict(imports=['concept_distill'], allow_failed_imports=False)
# mmdet3d's dataset refuses to train without resampled `scene_idxs`; this subclass (in
# concept_distill) visits every scene once per epoch instead.
dataset_type = 'ScanNetWholeSceneSegDataset'
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
    # colours 0-255 -> 0-1 (the voxel features are x, y, z, r, g, b)
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])
]
# The evaluator compares against `eval_ann_info['pts_semantic_mask']`, which only holds the
# 0..19 training labels if PointSegClassMapping runs here too (mmdet3d's base omits it and
# would score raw NYU40 ids).
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
test_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline))
val_dataloader = test_dataloader
