# MinkUNet34 (w32, spconv) on ScanNet segmentation, backbone initialised from ConceptDistill
# pre-training (configs/pretrain/minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames.py),
# whose run exports `backbone_latest.pth` into its work dir (the default path below). For
# another file: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./minkunet34_w32_spconv_8xb2-cosine-200e_scannet-seg.py']

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames/'
            'backbone_latest.pth',
            prefix='backbone.')))

# mmengine's Pretrained init only warns about mismatched keys; this stops the run instead.
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
