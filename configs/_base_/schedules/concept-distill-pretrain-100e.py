# Pre-training schedule (our choice; the paper gives none, see docs/pretraining.md):
# AdamW, lr 1e-3 for a total batch of 64 pairs (8 GPUs x 8), weight decay 0.05 (none on norms,
# biases, concept queries and the temperature), 1 epoch linear warm-up then cosine to 1e-5
# over 100 epochs, gradient clipping at 10.
lr = 1e-3
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'concept_extractor.queries': dict(decay_mult=0.0),
            'alignment_loss.logit_scale': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=10, norm_type=2))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=99, eta_min=1e-5, by_epoch=True, begin=1, end=100,
         convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Total batch of the recipe; `--auto-scale-lr` rescales lr for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=64)
