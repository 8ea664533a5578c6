# 3DETR on SUN RGB-D, the reference's short schedule (90 epochs); same model.
_base_ = ['./3detr_1xb8-1080e_sunrgbd-3d.py']

lr = 7e-4
max_epochs = 90
warmup_epochs = 9
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
