# ShapeNet-55 object pairs for pre-training (docs/object_track.md): each item is one shape's
# point cloud (Point-BERT's shapenet_pc/<synset>-<model>.npy, 8,192 x 3) and one of its
# rendered views (shapenet_views/<synset>-<model>/, drawn per sample in training; every view
# in validation and teacher extraction). The teacher reads the view from the cache made by
# tools/extract_teacher_features.py (one row per (shape, view), id '<synset>-<model>/<NN>').
dataset_type = 'ShapeNet55ViewPairDataset'
data_root = 'data/ShapeNet55-34/'
teacher_cache = 'data/ShapeNet55-34/teacher_cache'

teacher_image_size = (224, 224)  # ViT-B/16
# Views are square renders: squashing to 224x224 keeps their aspect and every point in view.
image_preprocessing = dict(type='ResizeCropForTeacher', size=teacher_image_size, mode='squash')
# Point-MAE's ShapeNet-55 pre-training input: 1,024 of the 8,192 points, drawn at random.
num_points = 1024

# The student sees the whole shape, as downstream classification does: no occlusion test
# (with_depth=False), so every point is paired with the pixel it projects to (hidden points
# with the pixel of the surface in front of them). with_depth=True (the view's depth file)
# keeps only the visible surface. The depth range only guards against cameras inside the shape.
# Normalisation (centroid, unit sphere) and the scale/shift augmentation come after pairing:
# pixel_uv rides along as a point attribute.
pair_loading = [
    dict(type='LoadObjectPoints'),
    dict(type='LoadPairedImage', with_pixels=False, with_depth=False),
    image_preprocessing,
    dict(type='FrustumPointPairing', num_points=num_points, depth_range=(1e-3, 1e3),
         min_points=256),
    dict(type='NormalizeObjectPoints'),
    # Patch tokens too: the default loss's per-concept term matches concepts to them
    # (extract with --tokens patch). The cached teacher is checked against model.teacher by
    # the pre-training hook.
    dict(type='LoadTeacherFeatures', cache_dir=teacher_cache, tokens=True,
         preprocessing=image_preprocessing),
]
train_pipeline = pair_loading + [
    # Point-MAE's pre-training augmentation: per-axis scale 2/3-3/2, shift +-0.2.
    dict(type='ObjectScaleTranslate', scale=(2.0 / 3.0, 1.5), translate=0.2),
    dict(type='PackPairedInputs'),
]
test_pipeline = pair_loading + [dict(type='PackPairedInputs')]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
