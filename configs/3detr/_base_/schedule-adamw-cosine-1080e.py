# The 3DETR reference schedule: 1080 epochs of AdamW with linear warm-up and cosine decay.
# AdamW, lr 5e-4, weight decay 0.1 (biases and norms included, as the reference),
# gradient clipping at L2 norm 0.1; 9 warm-up epochs from 1e-6, then cosine to 1e-6.
lr = 5e-4
max_epochs = 1080
warmup_epochs = 9
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.1),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The reference trains on one GPU with 8 scenes per batch.
auto_scale_lr = dict(enable=False, base_batch_size=8)
