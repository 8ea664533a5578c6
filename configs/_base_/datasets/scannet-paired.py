# Paired 2D-3D ScanNet frames for pre-training: each item is one posed RGB-D frame and the
# points of its scene that the frame sees (frustum + depth range + occlusion test).
# Infos come from `tools/create_data.py scannet|synthetic` (mmdet3d v2 infos + `frames`).
# Child configs change `data_root` (e.g. a synthetic root) and the pipelines' point format.

dataset_type = 'PairedFrameDataset'
data_root = 'data/scannet/'
data_prefix = dict(pts='points', img='', depth='')
backend_args = None

teacher_image_size = (224, 224)  # ViT-B/16
# The image goes to the teacher as a whole frame squashed to 224x224 (CLIPTeacher's default
# resize mode), so every paired point stays inside the teacher's view.
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
# A frame of a real ScanNet scan sees roughly 10-30k of its points; fewer are repeated.
num_points = 8192

# The points are loaded as the downstream VoteNet config loads them (xyz + height), paired in
# the scan's frame, then aligned (GlobalAlignment) and augmented in 3D. Pixel coordinates ride
# along as a point attribute, so the augmentations keep them in step.
# Loading and pairing, shared by both pipelines; training adds the 3D augmentations.
# precomputed_pairs: a frame with a `<frame>.pairs` file (`tools/create_data.py pairs`, same
# depth range / occlusion test as below) is paired from it (the scene memory-mapped, only the
# kept points read, no depth frame decoded); other frames are paired online.
paired_loading = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2], backend_args=backend_args, precomputed_pairs=True),
    dict(type='LoadPairedImage', with_pixels=True, with_depth=True,
         decode_size=teacher_image_size),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=num_points, depth_range=(0.1, 10.0),
         occlusion_tol=0.1, min_points=512),
    dict(type='GlobalAlignment', rotation_axis=2),
]
train_pipeline = paired_loading + [
    # The image is flipped too (independently); PackPairedInputs flips pixel_uv with it.
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
         scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='PackPairedInputs'),
]
test_pipeline = paired_loading + [dict(type='PackPairedInputs')]
# With a teacher-feature cache (tools/extract_teacher_features.py) the images are not decoded:
# replace LoadPairedImage by dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
# and add, before PackPairedInputs,
#   dict(type='LoadTeacherFeatures', cache_dir=<cache>, preprocessing=image_preprocessing,
#        teacher=<the model's teacher config>)
# (see docs/data_preparation.md).

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='scannet_infos_train.pkl',
        data_prefix=data_prefix,
        frame_stride=1,
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
        ann_file='scannet_infos_val.pkl',
        data_prefix=data_prefix,
        frame_stride=1,
        pipeline=test_pipeline,
        test_mode=True))
test_dataloader = val_dataloader
