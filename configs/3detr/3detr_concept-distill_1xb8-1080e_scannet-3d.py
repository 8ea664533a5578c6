# 3DETR on ScanNet (1080 epochs) with the encoder initialised from concept-distillation
# pre-training (configs/pretrain/3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py).
# Only the encoder (`backbone.*`) is pre-trained; the decoder and heads start from scratch.
# Point the checkpoint at another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./3detr_1xb8-1080e_scannet-3d.py']

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/3detr-encoder_concept-distill_8xb8-100e_scannet-frames/'
            'backbone_latest.pth',
            prefix='backbone.')))

# mmengine's Pretrained init only warns when keys do not match, which would leave a random
# encoder for 1,080 epochs: this hook stops the run instead, and checks the loaded tensors.
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
