# The demo's VoteNet, starting from the concept-distilled PointNet2SASSG backbone.
# Everything else equals votenet_synthetic.py (same schedule, same seed).
_base_ = ['./votenet_synthetic.py']

pretrained_backbone = 'demo_output/pretrain/backbone.pth'  # set by tools/demo.py
model = dict(backbone=dict(
    init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone, prefix='backbone.')))
# Stop (instead of mmengine's warning) if the checkpoint's keys do not fit the backbone.
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
