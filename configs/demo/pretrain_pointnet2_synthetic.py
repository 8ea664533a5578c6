# The demo's pre-training: VoteNet's PointNet2SASSG distilled from the (cached) CLIP teacher
# on the synthetic scenes' posed frames; sized for 2 CPU cores. tools/demo.py passes the data
# root and the length through --cfg-options, the cache folder through --transform-options
# LoadTeacherFeatures.cache_dir=DIR.
_base_ = [
    '../_base_/datasets/scannet-paired.py',
    '../_base_/models/pointnet2-sassg_concept-distill.py',
    '../_base_/default_runtime.py',
]

data_root = 'demo_output/data/'
teacher_cache = 'demo_output/teacher_cache'
teacher = {{_base_.model.teacher}}
image_preprocessing = {{_base_.image_preprocessing}}
num_points = 4096
max_iters = 50

# Cached teacher: images are not decoded; LoadTeacherFeatures adds teacher_global and the CLIP
# patch tokens (the per-concept term's targets: the demo caches them with --tokens patch).
# Pairs come from the `<frame>.pairs` files `create_data.py synthetic` writes.
# ResizeCropForTeacher needs no decoded image: it maps pixel_uv into the teacher's 224x224
# frame, the one the teacher saw.
paired_loading = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2], precomputed_pairs=True),
    dict(type='LoadPairedImage', with_pixels=False, with_depth=True),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=num_points, depth_range=(0.1, 10.0),
         occlusion_tol=0.1, min_points=512),
    dict(type='LoadTeacherFeatures', cache_dir=teacher_cache, tokens=True, teacher=teacher,
         preprocessing=image_preprocessing),
]
# Training: mmdet3d's GlobalAlignment + RandomFlip3D + GlobalRotScaleTrans (the ScanNet
# config's) fused into one affine map, same parameters and random draws (PairedPointAugment).
train_pipeline = paired_loading + [
    dict(type='PairedPointAugment', align_rotation_axis=2, sync_2d=False,
         flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5,
         rot_range=[-0.087266, 0.087266], scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='PackPairedInputs'),
]
test_pipeline = paired_loading + [dict(type='GlobalAlignment', rotation_axis=2),
                                  dict(type='PackPairedInputs')]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ConceptRetrievalMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, T_max=max_iters - 20,
         eta_min=1e-5),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=2),  # a 2-core iteration takes seconds
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
custom_hooks = [dict(type='ConceptDistillHook'), dict(type='SkippedFramesHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
