# ScanObjectNN h5 files (docs/object_track.md); `variant` is OBJ_BG, OBJ_ONLY or PB_T50_RS.
# All 2,048 points of each object (shuffled), as stored (the files are already normalised);
# training adds the peers' random per-axis scale and shift. xyz only.
data_root = 'data/scanobjectnn/'
variant = 'PB_T50_RS'
num_points = 2048
train_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='random'),
    dict(type='ObjectScaleTranslate', scale=(2.0 / 3.0, 1.5), translate=0.2),
    dict(type='PackObjectInputs'),
]
test_pipeline = [
    dict(type='ObjectPointSample', num_points=num_points, method='random', deterministic=True),
    dict(type='PackObjectInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ScanObjectNNDataset', data_root=data_root, variant=variant,
                 split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ScanObjectNNDataset', data_root=data_root, variant=variant,
                 split='test', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
