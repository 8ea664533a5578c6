# 3DETR on ScanNet (1080 epochs) whose encoder is the source paper's student, the 12-block
# 384-wide point-patch transformer, initialised from concept-distillation pre-training
# (configs/pretrain/ppt-12x384_concept-distill_8xb8-100e_scannet-frames.py), as ACT and
# MaskPoint transfer their pre-trained transformers to 3DETR. Only the encoder (`backbone.*`)
# is pre-trained; the encoder-to-decoder projection, decoder and heads start from scratch.
#
#   python tools/train.py configs/3detr/3detr-ppt-12x384_concept-distill_1xb8-1080e_scannet-3d.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/backbone_latest.pth
_base_ = ['./3detr_1xb8-1080e_scannet-3d.py']

pretrained_backbone = ('work_dirs/ppt-12x384_concept-distill_8xb8-100e_scannet-frames/'
                       'backbone_latest.pth')
embed_dims = 384
model = dict(
    backbone=dict(
        _delete_=True,
        # PointPatchTransformer with ThreeDETREncoder's output (patch centres + final tokens);
        # the same state-dict keys, so the export loads as it is.
        type='ThreeDETRPatchTransformerEncoder',
        # Every value that shapes a parameter equals the pre-training config's backbone (a
        # test checks the key sets and shapes). The patching changes no parameter: a scene of
        # 40,000 points (the pipeline's PointSample) gives 2,048 patches x 32 points, the token
        # count of 3DETR's own pre-encoder, each point in ~1.6 patches, patches of the same
        # ~10-20 cm surface scale as the 512 x 32 patches of an 8,192-point pre-training frame.
        in_channels=3,  # xyz, as the 3DETR pipelines load and as pre-training read
        num_groups=2048,
        group_size=32,
        embed_dims=embed_dims,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        drop_path_rate=0.1,  # Point-MAE's fine-tuning value
        use_cls_token=False,
        patch_hidden_channels=(128, 256),
        patch_fuse_channels=512,
        norm_cfg=dict(type='BN1d'),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone, prefix='backbone.')),
    # The head's 1x1-conv MLP projects the 384-wide tokens to the decoder's 256.
    bbox_head=dict(in_channels=embed_dims))

# mmengine's Pretrained init only warns when keys do not match, which would silently leave a
# random encoder: this hook stops the run instead, and checks the loaded tensors.
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
