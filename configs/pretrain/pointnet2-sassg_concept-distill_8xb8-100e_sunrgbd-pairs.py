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

val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates=32)
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                    save_best='align/top1', rule='greater'))
custom_hooks = [dict(type='ConceptDistillHook'), dict(type='SkippedFramesHook')]
