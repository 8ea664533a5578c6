# PointClassifier on the paper-size point-patch transformer (12 blocks x 384, 6 heads), the
# architecture the ConceptDistill pre-training exports (configs/_base_/models/
# point-patch-transformer_concept-distill.py): xyz input, no class token, so a pre-trained
# export loads with 0 missing / 0 unexpected keys and scratch and pre-trained runs share one
# model. The head reads the max and mean of the final patch tokens.
num_classes = 40
model = dict(
    type='PointClassifier',
    num_classes=num_classes,
    pool=('max', 'mean'),
    head_channels=(256, 256),
    dropout=0.5,
    label_smoothing=0.2,
    data_preprocessor=dict(type='ObjectDataPreprocessor'),
    # Test-time voting: set num_votes=10 (--cfg-options model.test_cfg.num_votes=10); the voted
    # accuracies are reported as *_vote, beside the plain ones.
    test_cfg=dict(num_votes=1, vote_scale=(2.0 / 3.0, 1.5), vote_translate=0.2, vote_seed=0),
    backbone=dict(
        type='PointPatchTransformer',
        in_channels=3,
        num_groups=64,
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
val_evaluator = dict(type='ObjectClassificationMetric')
test_evaluator = val_evaluator
