# Concept-alignment distillation of the masked 3DETR encoder (3DETR-m: layer i attends within
# masking_radius[i], a second set-abstraction layer halves the tokens after the first layer)
# from a frozen CLIP ViT-B/16 on ScanNet posed frames. Same data, teacher, loss, schedule and
# interleaved concept extractor as the plain 3DETR encoder recipe; only the encoder changes,
# to configs/3detr/3detr-m_1xb8-1080e_scannet-3d.py's (a test checks that its export loads
# there with zero missing or unexpected keys). Fine-tune from the export with
#
#   python tools/train.py configs/pretrain/3detr-m-encoder_concept-distill_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
#   python tools/train.py configs/3detr/3detr-m_1xb8-1080e_scannet-3d.py --cfg-options \
#       model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.prefix=backbone. \
#       model.backbone.init_cfg.checkpoint=work_dirs/<this config>/backbone_latest.pth
_base_ = ['./3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py']

model = dict(
    backbone=dict(
        # configs/3detr/3detr-m_1xb8-1080e_scannet-3d.py's encoder, field by field.
        dropout=0.3,
        masking_radius=(0.16, 0.64, 1.44),
        interim_num_points=1024, interim_radius=0.4, interim_num_samples=32,
        interim_channels=(256, 256)))
