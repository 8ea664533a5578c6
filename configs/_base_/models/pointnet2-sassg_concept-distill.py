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
    # A random teacher distils noise: building stops while `teacher.pretrained` (or a configured
    # mapper's `teacher.mapping.checkpoint`) is None, unless a test or demo sets this True.
    allow_random_teacher=False,
    teacher=dict(
        type='CLIPTeacher',
        model_name='ViT-B-16',
        pretrained=None,  # path of a local open_clip ViT-B-16 weights file (required)
        precision='fp32',
        resize_mode='squash',
        # ClipCap prefix targets (the paper's): ClipCap's MLP mapper gives 10 prefix tokens of
        # 768 (GPT-2) from OpenAI ViT-B/32, i.e. model_name='ViT-B-32-quickgelu' and
        # mapping=dict(mapping_type='mlp', checkpoint=<ClipCap .pt>,
        #              clip_model='ViT-B-32-quickgelu', num_prefix=10, prefix_dim=768)
        # with concept_extractor.num_concepts=10 (see the -clipcap pre-training config).
        mapping=None),
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
        # Concept k's own target: prefix token k with a mapper, else its balanced share of the
        # CLIP patch tokens (Sinkhorn matching); keeps the K concepts distinct.
        concept_weight=1.0,
        concept_target='auto',
        match_epsilon=0.05,
        token_weight=0.0,  # extra token-wise term; needs `teacher.mapping`
        global_weight=1.0,
        contrastive_weight=1.0,
        temperature=0.07,
        learnable_temperature=True,
        # InfoNCE on embeddings minus an EMA of the teacher's mean direction (CLIP image
        # embeddings share a large common component).
        center_momentum=0.9,
        set_weight=0.0,  # extra Chamfer set term
        # Off: each point token vs the CLIP patch feature at its pixel (pixel_uv).
        dense_weight=0.0))
# Patch tokens come from the online teacher, or from a cache made with
# `tools/extract_teacher_features.py --tokens patch` read by LoadTeacherFeatures(tokens=True).
