# ShapeNetPart (shapenetcore_partanno_segmentation_benchmark_v0_normal, docs/object_track.md):
# 2,048 points per shape (drawn at random, with repeats when a shape has fewer), centred and
# scaled into the unit sphere; training on train + val with a random per-axis scale and
# shift; evaluation on test with a fixed (seeded) draw. xyz only.
data_root = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal/'
num_points = 2048
train_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='random'),
    dict(type='NormalizeObjectPoints'),
    dict(type='ObjectScaleTranslate', scale=(0.8, 1.25), translate=0.1),
    dict(type='PackObjectInputs'),
]
test_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='random', deterministic=True),
    dict(type='NormalizeObjectPoints'),
    dict(type='PackObjectInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ShapeNetPartDataset', data_root=data_root, split='trainval',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ShapeNetPartDataset', data_root=data_root, split='test',
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
