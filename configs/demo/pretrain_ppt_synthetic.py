# Demo-scale pre-training of the paper's student: the 12-block point-patch transformer, narrow
# (96 wide) and with few patches so it runs on 2 CPU cores, distilled from the (cached) CLIP
# teacher on the synthetic scenes' posed frames, one concept layer per block. Data, cache and
# schedule as configs/demo/pretrain_pointnet2_synthetic.py (the same --cfg-options fields);
# the student and its token adapter differ.
_base_ = ['./pretrain_pointnet2_synthetic.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='PointPatchTransformer',
        in_channels=3,
        # 4,096 points per frame (the demo's FrustumPointPairing) -> 128 patches x 32 points:
        # each point in one patch on average (half the paper-scale overlap; CPU budget).
        num_groups=128,
        group_size=32,
        embed_dims=96,
        depth=12,
        num_heads=4,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        use_cls_token=False,
        patch_hidden_channels=(32, 64),
        patch_fuse_channels=128),
    token_adapter=dict(
        _delete_=True,
        type='PointPatchTokenAdapter',
        out_channels=96,
        use_dims=[0, 1, 2]),  # xyz of the xyz + height points
    concept_extractor=dict(
        type='InterleavedConceptExtractor',
        num_layers=12,  # one concept layer per block
        embed_dims=96,
        num_heads=4))
