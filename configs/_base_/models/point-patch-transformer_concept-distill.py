# ConceptDistiller around the source paper's own student: a 12-block, 384-wide point-patch
# transformer (Point-BERT / Point-MAE layout), with a concept-extraction layer interleaved
# next to every block as in the paper's figure (concept layer i cross-attends to the patch
# tokens of block i). Teacher, loss and preprocessor are the PointNet++ recipe's (inherited),
# so the two students are compared under one distillation set-up.
# Defaults are object scale (1,024-point clouds: 64 patches x 32 points, 2x point coverage,
# Point-MAE's); scene configs raise num_groups (see configs/pretrain/ppt-12x384_*).
# Every default is explained in docs/pretraining.md.
_base_ = ['./pointnet2-sassg_concept-distill.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='PointPatchTransformer',
        in_channels=3,        # xyz only: the same weights load into the object-level models
        num_groups=64,
        group_size=32,
        embed_dims=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        drop_path_rate=0.1,   # Point-MAE's pre-training value
        use_cls_token=False,  # the concepts read patch tokens; a class token is a downstream
                              # choice (it would add keys downstream models must expect)
        patch_hidden_channels=(128, 256),
        patch_fuse_channels=512,
        norm_cfg=dict(type='BN1d')),
    token_adapter=dict(
        _delete_=True,
        type='PointPatchTokenAdapter',
        out_channels=384,
        # The paired pipelines load xyz + height (VoteNet's format); the transformer reads xyz.
        use_dims=[0, 1, 2]),
    concept_extractor=dict(
        type='InterleavedConceptExtractor',
        num_layers=12,   # one concept layer per block
        embed_dims=384,  # the concept stream is as wide as the point stream, as in the figure
        num_heads=6))
