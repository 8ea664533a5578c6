# The demo's VoteNet: mmdet3d's own ScanNet config (unmodified model) on the synthetic
# ScanNet-format scenes, with a schedule sized for 2 CPU cores. `make demo` runs it twice:
# from scratch and from the concept-distilled backbone (votenet_synthetic_pretrained.py).
_base_ = ['mmdet3d::votenet/votenet_8xb8_scannet-3d.py']
custom_imports = dict(imports=['concept_distill'], allow_failed_imports=False)
# mmdet3d's VoteNet config carries mmdet3d's runtime; the project's runner as in
# ../_base_/default_runtime.py (trusted resume, atomic checkpoints).
runner_type = 'ConceptDistillRunner'

data_root = 'demo_output/data/'  # tools/demo.py passes its own through --cfg-options
num_points = 8192
max_epochs = 4  # x `repeat` passes over the train scenes
repeat = 8

train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2]),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True,
         with_mask_3d=True, with_seg_3d=True),
    dict(type='GlobalAlignment', rotation_axis=2),
    dict(type='PointSegClassMapping'),
    dict(type='PointSample', num_points=num_points),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
         scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d',
                                       'pts_semantic_mask', 'pts_instance_mask']),
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2]),
    dict(type='GlobalAlignment', rotation_axis=2),
    dict(type='PointSample', num_points=num_points),
    dict(type='Pack3DDetInputs', keys=['points']),
]

train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(times=repeat, dataset=dict(data_root=data_root, pipeline=train_pipeline)))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
# Short warm-up (VoteNet's first gradients are large), then mmdet3d's constant lr 0.008:
# the base MultiStepLR decays at epochs 24/32, beyond the demo's length.
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    # save_last writes the final checkpoint whatever the length chosen on the command line
    checkpoint=dict(type='CheckpointHook', interval=1000, save_last=True, max_keep_ckpts=1))
randomness = dict(seed=0)
