# Concept-alignment distillation of the 3DETR encoder (PointNet++ set-abstraction pre-encoder
# + 3-layer transformer) from a frozen CLIP ViT-B/16 on ScanNet posed frames. Same data,
# teacher, loss and schedule as the PointNet++ recipe; what changes is the student and the
# concept extractor, which is interleaved with the encoder as in the source paper's figure:
# concept layer i cross-attends to the tokens of encoder layer i. The exported
# `backbone_*.pth` loads into configs/3detr/3detr_concept-distill_1xb8-1080e_scannet-3d.py.
#
#   python tools/train.py configs/pretrain/3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
_base_ = ['./pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py']

model = dict(
    # Identical to configs/3detr/_base_/3detr.py's backbone (a test checks it): only then do
    # the exported weights load with zero missing / unexpected keys.
    backbone=dict(
        _delete_=True,
        type='ThreeDETREncoder',
        in_channels=3,
        num_points=2048, radius=0.2, num_samples=64, sa_channels=(64, 128),
        embed_dims=256, num_layers=3, num_heads=4, ffn_dims=128, dropout=0.1,
        activation='relu',
        masking_radius=None),
    token_adapter=dict(
        _delete_=True,
        type='ThreeDETRTokenAdapter',
        out_channels=256,
        # The paired pipeline loads xyz + height (VoteNet's format); 3DETR reads xyz only.
        use_dims=[0, 1, 2]),
    concept_extractor=dict(
        type='InterleavedConceptExtractor',
        num_layers=3))  # one concept layer per encoder layer
