# VoteNet on ScanNet, initialised from a ConceptDistill pre-trained PointNet2SASSG.
# mmdet3d's own config, unmodified except for the backbone's init_cfg; the plugin is imported
# for the CPU point operators and the guard hook (no model code changes).
#
#   python tools/train.py configs/votenet/votenet_concept-distill_8xb8_scannet-3d.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/backbone_latest.pth
_base_ = ['mmdet3d::votenet/votenet_8xb8_scannet-3d.py']
custom_imports = dict(imports=['concept_distill'], allow_failed_imports=False)
# mmdet3d's VoteNet config carries mmdet3d's runtime; the project's runner as in
# ../_base_/default_runtime.py (trusted resume, atomic checkpoints).
runner_type = 'ConceptDistillRunner'

pretrained_backbone = ('work_dirs/pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames/'
                       'backbone_latest.pth')
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone, prefix='backbone.')))

# mmengine's Pretrained init only warns when keys do not match, which would silently leave a
# random backbone: this hook stops the run instead, and checks the loaded tensors.
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
