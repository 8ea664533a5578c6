# 3DETR-m (masked encoder) on ScanNet, 1080 epochs. Layer i attends within masking_radius[i]
# metres; a second set-abstraction layer halves the tokens after the first layer.
_base_ = ['./3detr_1xb8-1080e_scannet-3d.py']

model = dict(
    backbone=dict(
        dropout=0.3,  # --enc_dropout 0.3 in the reference's masked ScanNet recipe
        # The reference squares (0.4, 0.8, 1.2) and compares the squares with plain
        # distances, so these are the radii it effectively uses.
        masking_radius=(0.16, 0.64, 1.44),
        interim_num_points=1024, interim_radius=0.4, interim_num_samples=32,
        interim_channels=(256, 256)),
    bbox_head=dict(proj_hidden_layers=1))
