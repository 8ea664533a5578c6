# PointPartSegmentor on the paper-size point-patch transformer (the pre-training export's
# architecture: xyz input, no class token): tokens of blocks 4, 8 and 12 propagated to every
# point (3 nearest patch centres), with the object category as an input.
model = dict(
    type='PointPartSegmentor',
    num_parts=50,
    num_categories=16,
    feature_blocks=(3, 7, 11),
    propagate_dims=384,
    category_dims=64,
    point_dims=64,
    head_channels=(256, 128),
    dropout=0.5,
    label_smoothing=0.0,
    data_preprocessor=dict(type='ObjectDataPreprocessor'),
    backbone=dict(
        type='PointPatchTransformer',
        in_channels=3,
        num_groups=128,
        group_size=32,
        embed_dims=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        use_cls_token=False,
        patch_hidden_channels=(128, 256),
        patch_fuse_channels=512,
        norm_cfg=dict(type='BN1d')))
val_evaluator = dict(type='PartSegMetric')
test_evaluator = val_evaluator
