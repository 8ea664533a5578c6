# Paired 2D-3D SUN RGB-D samples for pre-training: each item is the RGB image and the points
# of its own depth cloud (mmdet3d's infos carry images.CAM0.img_path and depth2img).
# Infos come from `tools/create_data.py sunrgbd` (mmdet3d's converter).

dataset_type = 'PairedFrameDataset'
data_root = 'data/sunrgbd/'
data_prefix = dict(pts='points', img='sunrgbd_trainval/image')
backend_args = None

teacher_image_size = (224, 224)  # ViT-B/16
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
# SUN RGB-D clouds hold ~50k points (mmdet3d samples 50k per frame); 8192 like ScanNet pairs.
num_points = 8192

# Points as the downstream VoteNet SUN RGB-D config loads them (xyz + height); there is no
# separate depth frame (the cloud is the depth frame), so no occlusion test is needed.
# Loading and pairing, shared by both pipelines; training adds the 3D augmentations.
# Frames with a `.pairs` file (`create_data.py pairs --pts-prefix points --img-prefix
# sunrgbd_trainval/image --no-depth-test`) are paired from it, the others online.
paired_loading = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args, precomputed_pairs=True),
    dict(type='LoadPairedImage', with_pixels=True, with_depth=False,
         decode_size=teacher_image_size),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=num_points, depth_range=(0.1, 10.0),
         min_points=512),
]
train_pipeline = paired_loading + [
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.523599, 0.523599],
         scale_ratio_range=[0.85, 1.15], shift_height=True),
    dict(type='PackPairedInputs'),
]
test_pipeline = paired_loading + [dict(type='PackPairedInputs')]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='sunrgbd_infos_train.pkl',
        data_prefix=data_prefix,
        pipeline=train_pipeline,
        test_mode=False))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    # A frame that cannot be read nor replaced without a duplicate pair is left out (None).
    collate_fn=dict(type='paired_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='sunrgbd_infos_val.pkl',
        data_prefix=data_prefix,
        pipeline=test_pipeline,
        test_mode=True))
test_dataloader = val_dataloader
