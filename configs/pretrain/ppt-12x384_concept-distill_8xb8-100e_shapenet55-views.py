# Object-level concept distillation of the source paper's student (the 12-block, 384-wide
# point-patch transformer) from a frozen CLIP ViT-B/16 on ShapeNet-55 shapes paired with
# rendered views (ULIP / ACT / ReCon pair shapes with renders for their 2D teachers). The
# export loads into configs/classification/ and configs/part_segmentation/ (same backbone).
#
#   python tools/extract_teacher_features.py <this config> --tokens patch \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
#   python tools/train.py <this config> --cfg-options model.teacher.pretrained=/path/to/...bin
#   bash tools/dist_train.sh <this config> 8 --cfg-options model.teacher.pretrained=...
#
# Data: docs/object_track.md (views from tools/render_object_views.py when you have meshes).
# Without `model.teacher.pretrained` the build stops (a random teacher distils noise);
# `model.allow_random_teacher=True` runs one on purpose. Schedule: the scene recipe's
# (100 epochs, AdamW 1e-3 for a total batch of 64, cosine); see docs/pretraining.md.
_base_ = [
    '../_base_/datasets/shapenet55-views.py',
    '../_base_/models/point-patch-transformer_concept-distill.py',
    '../_base_/schedules/concept-distill-pretrain-100e.py',
    '../_base_/default_runtime.py',
]


# The model config's object-scale defaults (64 patches x 32 points over 1,024 points) fit
# these clouds as they are. The points are xyz only; the adapter reads the same columns.
model = dict(token_adapter=dict(use_dims=[0, 1, 2]))

# Held-out alignment: student -> teacher retrieval among 32 candidates, mean cosine.
val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates=32)
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3,
                    save_best='align/top1', rule='greater'))
# Keeps the teacher frozen, checks the cache is its own and writes backbone_<checkpoint>.pth
# next to every checkpoint.
custom_hooks = [dict(type='ConceptDistillHook')]
