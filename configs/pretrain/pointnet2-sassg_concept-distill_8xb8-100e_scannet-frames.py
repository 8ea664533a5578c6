# Concept-alignment distillation of VoteNet's PointNet2SASSG from a frozen CLIP ViT-B/16 on
# ScanNet posed frames (one RGB frame + the points of its scene it sees). The exported
# `backbone_*.pth` loads into configs/votenet/ (mmdet3d's VoteNet ScanNet config).
#
#   python tools/train.py configs/pretrain/pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
#   bash tools/dist_train.sh configs/pretrain/<this file> 8 --cfg-options ...
#
# Schedule: 100 epochs, AdamW 1e-3 (total batch 64), cosine; see docs/pretraining.md for each
# choice. Without `model.teacher.pretrained` the run stops at build (a random teacher distils
# noise); `model.allow_random_teacher=True` runs one on purpose.
_base_ = [
    '../_base_/datasets/scannet-paired.py',
    '../_base_/models/pointnet2-sassg_concept-distill.py',
    '../_base_/schedules/concept-distill-pretrain-100e.py',
    '../_base_/default_runtime.py',
]

backend_args = None
teacher_image_size = (224, 224)
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
# The dataset config's training pipeline with mmdet3d's GlobalAlignment + RandomFlip3D +
# GlobalRotScaleTrans fused into PairedPointAugment: same parameters and random draws, the
# same points up to float32 round-off, one affine map instead of three passes
# (tests/test_datasets/test_paired_point_augment.py; docs/benchmarks.md, "Precomputed pairs").
# Validation keeps the dataset config's pipeline (GlobalAlignment, no augmentation).
train_pipeline = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args, precomputed_pairs=True),
    dict(type='LoadPairedImage', with_pixels=True, with_depth=True,
         decode_size=teacher_image_size),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=8192, depth_range=(0.1, 10.0),
         occlusion_tol=0.1, min_points=512),
    dict(type='PairedPointAugment', align_rotation_axis=2, sync_2d=False,
         flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5,
         rot_range=[-0.087266, 0.087266], scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='PackPairedInputs'),
]
# Frames of one scan are highly redundant: every 10th exported frame (ScanNet exports are
# already every 20th .sens frame, so one frame per ~7 s of video).
train_dataloader = dict(dataset=dict(frame_stride=10, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(frame_stride=10))
test_dataloader = val_dataloader

# Held-out alignment: student -> teacher retrieval among 32 candidates, mean cosine.
val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates=32)
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                    save_best='align/top1', rule='greater'))
# Keeps the teacher frozen and writes backbone_<checkpoint>.pth next to every checkpoint;
# SkippedFramesHook logs the frames skipped in the dataloader workers, summed.
custom_hooks = [dict(type='ConceptDistillHook'), dict(type='SkippedFramesHook')]
