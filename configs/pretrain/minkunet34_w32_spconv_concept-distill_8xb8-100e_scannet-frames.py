# Concept-alignment distillation of MinkUNet34 (w32, spconv) from a frozen CLIP ViT-B/16 on
# ScanNet posed frames. Same teacher, concept extractor, loss and schedule as the PointNet++
# recipe; what changes is the student: the sparse-conv backbone of
# configs/minkunet/*seg.py, fed xyz + rgb points and read out per point (each point takes the
# feature of its 2 cm voxel). The exported `backbone_*.pth` loads into
# configs/minkunet/minkunet34_w32_spconv_concept-distill_*.py (ScanNet and S3DIS).
#
#   python tools/train.py configs/pretrain/minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/open_clip_ViT-B-16.bin
_base_ = ['./pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py']

voxel_size = 0.02  # as the segmentation configs: the backbone learns at the scale it is used
model = dict(
    # Identical to the segmentation configs' backbone (a test checks it), minus `init_cfg`.
    backbone=dict(
        _delete_=True,
        type='MinkUNetBackbone',
        in_channels=6,  # x, y, z, r, g, b (colours 0-1)
        num_stages=4,
        base_channels=32,
        encoder_channels=[32, 64, 128, 256],
        encoder_blocks=[2, 3, 4, 6],
        decoder_channels=[256, 128, 96, 96],
        decoder_blocks=[2, 2, 2, 2],
        block_type='basic',
        sparseconv_backend='spconv'),
    # The adapter voxelises on the points' device (concept_distill's torch quantisation, the
    # same as mmdet3d's 'minkunet' type), not the data preprocessor: mmdet3d's CUDA
    # voxelisation reads `gt_pts_seg`, which paired samples do not have, and breaks the
    # point-to-voxel map when `max_voxels` drops voxels.
    token_adapter=dict(
        _delete_=True,
        type='MinkUNetTokenAdapter',
        out_channels=96,
        voxel_size=voxel_size,
        # A frame's points share voxels; 4096 point tokens per frame (random each step) keep
        # the concept extractor's cross-attention cheap and match the PointNet++ recipe's
        # scale (1024 FP tokens) within a factor of 4.
        max_tokens=4096))

backend_args = None
teacher_image_size = (224, 224)
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
load_points = dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=False,
                   use_color=True, load_dim=6, use_dim=[0, 1, 2, 3, 4, 5],
                   backend_args=backend_args, precomputed_pairs=True)
# Every visible point of the frame (voxelisation removes duplicates), as the segmentation
# configs load them: unaligned scan frame, colours 0-1; the segmentation augmentations.
pairing = dict(type='FrustumPointPairing', num_points=None, depth_range=(0.1, 10.0),
               occlusion_tol=0.1, min_points=512)
paired_loading = [
    load_points,
    dict(type='LoadPairedImage', with_pixels=True, with_depth=True,
         decode_size=teacher_image_size),
    image_preprocessing,
    pairing,
]
# mmdet3d's RandomFlip3D + GlobalRotScaleTrans with these parameters, fused into one affine
# map (same random draws and points up to float32 round-off; PairedPointAugment).
train_pipeline = paired_loading + [
    dict(type='PairedPointAugment', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5, rot_range=[-3.14159265, 3.14159265],
         scale_ratio_range=[0.9, 1.1], translation_std=[0.1, 0.1, 0.1]),
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='PackPairedInputs'),
]
test_pipeline = paired_loading + [
    dict(type='NormalizePointsColor', color_mean=None),
    dict(type='PackPairedInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
