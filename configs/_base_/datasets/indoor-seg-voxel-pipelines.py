# Whole-scene voxel-model pipelines (MinkUNet) shared by scannet-seg-voxel.py and
# s3dis-seg-voxel.py. mmdet3d's *-seg.py sample 1.5 m / 1 m patches of points for PointNet++;
# a sparse-conv model sees the whole scene instead, with indoor augmentations (rotation about
# z, scaling, flips, jitter). Names are prefixed so they never clash with mmdet3d's bases.
_voxel_backend_args = None
_voxel_load_points = dict(
    type='LoadPointsFromFile',
    coord_type='DEPTH',
    shift_height=False,
    use_color=True,
    load_dim=6,
    use_dim=[0, 1, 2, 3, 4, 5],
    backend_args=_voxel_backend_args)
_voxel_load_seg = dict(
    type='LoadAnnotations3D',
    with_bbox_3d=False,
    with_label_3d=False,
    with_mask_3d=False,
    with_seg_3d=True,
    backend_args=_voxel_backend_args)

voxel_seg_train_pipeline = [
    _voxel_load_points,
    _voxel_load_seg,
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
voxel_seg_test_pipeline = [
    _voxel_load_points,
    _voxel_load_seg,
    dict(type='PointSegClassMapping'),
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='Pack3DDetInputs', keys=['points'])
]

