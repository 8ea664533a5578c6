# MinkUNet34 (w32, spconv) on ScanNet segmentation, backbone initialised from ConceptDistill
# pre-training (configs/pretrain/minkunet34_w32_spconv_concept-distill_scannet-frames.py).
# Point `checkpoint` at the backbone file that pre-training exports, e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<run>/backbone.pth
_base_ = ['./minkunet34_w32_spconv_8xb2-cosine-200e_scannet-seg.py']

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/minkunet34_w32_spconv_concept-distill_scannet-frames/'
            'backbone.pth',
            prefix='backbone.')))
