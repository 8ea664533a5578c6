# SUN RGB-D variant: each RGB image paired with its own depth cloud. The backbone is the same
# PointNet2SASSG (xyz + height) that mmdet3d's VoteNet SUN RGB-D config uses, so the export
# also loads into `mmdet3d::votenet/votenet_8xb16_sunrgbd-3d.py`.
#
#   python tools/train.py configs/pretrain/pointnet2-sassg_concept-distill_8xb8-100e_sunrgbd-pairs.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
_base_ = [
    '../_base_/datasets/sunrgbd-paired.py',
    '../_base_/models/pointnet2-sassg_concept-distill.py',
    '../_base_/schedules/concept-distill-pretrain-100e.py',
    '../_base_/default_runtime.py',
]

backend_args = None
teacher_image_size = (224, 224)
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
# The dataset config's training pipeline with mmdet3d's RandomFlip3D + GlobalRotScaleTrans
# fused into PairedPointAugment: same parameters and random draws (the image is flipped by
# mmdet's RandomFlip as before), the same points up to float32 round-off, one affine map
# (tests/test_datasets/test_paired_point_augment.py). Validation keeps the dataset's.
train_pipeline = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args, precomputed_pairs=True),
    dict(type='LoadPairedImage', with_pixels=True, with_depth=False,
         decode_size=teacher_image_size),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=8192, depth_range=(0.1, 10.0),
         min_points=512),
    dict(type='PairedPointAugment', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         rot_range=[-0.523599, 0.523599], scale_ratio_range=[0.85, 1.15], shift_height=True),
    dict(type='PackPairedInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates=32)
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                    save_best='align/top1', rule='greater'))
custom_hooks = [dict(type='ConceptDistillHook'), dict(type='SkippedFramesHook')]
