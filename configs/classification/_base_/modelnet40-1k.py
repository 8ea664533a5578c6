# ModelNet40 from modelnet40_normal_resampled (docs/object_track.md): 1,024 points by
# furthest point sampling, centred and scaled into the unit sphere; training adds the peers'
# random per-axis scale (2/3-3/2) and shift (+-0.2). xyz only.
data_root = 'data/modelnet40_normal_resampled/'
num_points = 1024
train_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='fps'),
    dict(type='NormalizeObjectPoints'),
    dict(type='ObjectScaleTranslate', scale=(2.0 / 3.0, 1.5), translate=0.2),
    dict(type='PackObjectInputs'),
]
test_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='fps', deterministic=True),
    dict(type='NormalizeObjectPoints'),
    dict(type='PackObjectInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ModelNet40Dataset', data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ModelNet40Dataset', data_root=data_root, split='test',
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
