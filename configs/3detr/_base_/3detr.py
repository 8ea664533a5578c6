# 3DETR model (Misra et al., ICCV 2021) with the reference's ScanNet settings; dataset
# configs change the class count, queries, heading bins and set-loss weights.

num_classes = 18
model = dict(
    type='ThreeDETR',
    data_preprocessor=dict(type='Det3DDataPreprocessor'),
    backbone=dict(
        type='ThreeDETREncoder',
        in_channels=3,  # xyz
        num_points=2048, radius=0.2, num_samples=64, sa_channels=(64, 128),
        embed_dims=256, num_layers=3, num_heads=4, ffn_dims=128, dropout=0.1,
        activation='relu',
        masking_radius=None),  # plain encoder; see 3detr-m_* for the masked one
    bbox_head=dict(
        type='ThreeDETRHead',
        num_classes=num_classes,
        in_channels=256, embed_dims=256,
        num_queries=256,
        num_heading_bins=1,  # ScanNet boxes are axis-aligned: no heading heads
        proj_hidden_layers=2,
        decoder=dict(num_layers=8, num_heads=4, ffn_dims=256, dropout=0.1),
        mlp_dropout=0.3,
        loss=dict(
            type='ThreeDETRSetLoss',
            matcher=dict(type='HungarianMatcher3D', cls_cost=1.0, objectness_cost=0.0,
                         center_cost=0.0, giou_cost=2.0),
            cls_weight=1.0, no_object_weight=0.25, center_weight=5.0, size_weight=1.0,
            giou_weight=1.0, heading_cls_weight=0.1, heading_reg_weight=0.5)),
    train_cfg=None,
    # NMS-free by default (nms_thr=None); nms_thr=0.25 reproduces the reference code's
    # per-class 3D NMS at evaluation.
    test_cfg=dict(score_thr=0.05, per_class_proposal=True, nms_thr=None))
