# Concept-alignment distillation of the source paper's student, the 12-block 384-wide point-
# patch transformer, from a frozen CLIP ViT-B/16 on ScanNet posed frames. Same data, teacher,
# loss and schedule as the PointNet++ recipe; the student and the concept extractor change:
# one concept layer per transformer block, reading that block's patch tokens (the figure).
#
#   python tools/train.py configs/pretrain/ppt-12x384_concept-distill_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
_base_ = ['./pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py']

model = dict(
    # The backbone of configs/_base_/models/point-patch-transformer_concept-distill.py with
    # scene-scale patching. A frame holds 8,192 points (the paired pipeline's num_points):
    # 512 patches x 32 points cover each point about twice, the overlap Point-MAE uses for
    # objects (64 x 32 over 1,024 points), and a 32-point patch of a frame spans ~10-20 cm of
    # surface, the scale of furniture parts. num_groups / group_size change no parameter
    # shape, so the exported weights load into the 64 x 32 object-level models (a test checks
    # the key sets and shapes agree).
    backbone=dict(
        _delete_=True,
        type='PointPatchTransformer',
        in_channels=3,
        num_groups=512,
        group_size=32,
        embed_dims=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        use_cls_token=False,
        patch_hidden_channels=(128, 256),
        patch_fuse_channels=512,
        norm_cfg=dict(type='BN1d')),
    token_adapter=dict(
        _delete_=True,
        type='PointPatchTokenAdapter',
        out_channels=384,
        # The paired pipeline loads xyz + height (VoteNet's format); the transformer reads xyz.
        use_dims=[0, 1, 2]),
    concept_extractor=dict(
        type='InterleavedConceptExtractor',
        num_layers=12,   # one concept layer per block
        embed_dims=384,
        num_heads=6))
