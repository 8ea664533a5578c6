# ConceptDistiller around VoteNet's own PointNet2SASSG (taken from mmdet3d's VoteNet model
# config, not copied), so its `backbone.*` weights load into VoteNet with zero missing keys.
# Every default is explained in docs/pretraining.md.
_base_ = ['mmdet3d::_base_/models/votenet.py']

model = dict(
    _delete_=True,
    type='ConceptDistiller',
    # Collates points and stacks images; mean/std stay None: the teacher normalises with the
    # open_clip model's own preprocessing config.
    data_preprocessor=dict(type='Det3DDataPreprocessor'),
    backbone={{_base_.model.backbone}},
    token_adapter=dict(type='PointNet2TokenAdapter', out_channels=256),
    teacher=dict(
        type='CLIPTeacher',
        model_name='ViT-B-16',
        pretrained=None,  # path of a local open_clip ViT-B-16 weights file; None: random init
        precision='fp32',
        resize_mode='squash',
        mapping=None),  # dict(checkpoint=..., num_prefix=16) for ClipCap-style prefix targets
    concept_extractor=dict(
        type='ConceptExtractor',
        num_concepts=16,
        embed_dims=256,
        num_layers=2,
        num_heads=8,
        ffn_ratio=4.0,
        dropout=0.0,
        self_attn=True,
        pos_encoding='fourier',
        num_freqs=64,
        fourier_scale=1.0),
    loss=dict(
        type='ConceptAlignmentLoss',
        token_weight=0.0,  # needs `teacher.mapping`
        global_weight=1.0,
        contrastive_weight=1.0,
        temperature=0.07,
        learnable_temperature=True,
        # InfoNCE on embeddings minus an EMA of the teacher's mean direction (CLIP image
        # embeddings share a large common component).
        center_momentum=0.9,
        set_weight=0.0))  # needs patch tokens (online teacher, or a cache with --tokens patch)
