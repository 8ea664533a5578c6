# Demo-scale object pre-training: the ShapeNet-55 views recipe on the synthetic objects
# (tools/create_object_data.py writes their ShapeNet-55 layout with rendered views), with a
# small point-patch transformer (4 blocks x 128) and a random CLIP teacher, sized for a
# couple of CPU minutes. The cache folder is set with --transform-options:
#
#   python tools/create_object_data.py --out-dir data/synthetic_objects --layouts shapenet55
#   python tools/extract_teacher_features.py configs/demo/pretrain_ppt_objects_synthetic.py \
#       --tokens patch --cache-dir DIR
#   python tools/train.py configs/demo/pretrain_ppt_objects_synthetic.py \
#       --transform-options LoadTeacherFeatures.cache_dir=DIR
#   python tools/export_backbone.py <work_dir>/iter_60.pth backbone.pth --trust-checkpoint
#
# The export loads into the object models at this size (backbone depth 4, embed_dims 128,
# patch MLP (32, 64) / 128, 4 heads); see docs/object_track.md.
_base_ = ['../pretrain/ppt-12x384_concept-distill_8xb8-100e_shapenet55-views.py']

data_root = 'data/synthetic_objects/ShapeNet55/'
max_iters = 60
embed_dims = 128
depth = 4

model = dict(
    allow_random_teacher=True,  # no CLIP weights in the demo: the pipeline, not the features
    backbone=dict(embed_dims=embed_dims, depth=depth, num_heads=4,
                  patch_hidden_channels=(32, 64), patch_fuse_channels=128,
                  drop_path_rate=0.0),
    token_adapter=dict(out_channels=embed_dims),
    concept_extractor=dict(num_layers=depth, embed_dims=embed_dims, num_heads=4))

train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates=16)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max_iters,
         T_max=max_iters - 10, eta_min=1e-5),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
