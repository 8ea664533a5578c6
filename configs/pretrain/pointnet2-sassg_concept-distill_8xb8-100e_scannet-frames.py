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

# Frames of one scan are highly redundant: every 10th exported frame (ScanNet exports are
# already every 20th .sens frame, so one frame per ~7 s of video).
train_dataloader = dict(dataset=dict(frame_stride=10))
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
