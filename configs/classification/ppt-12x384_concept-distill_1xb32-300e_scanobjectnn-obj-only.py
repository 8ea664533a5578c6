# ScanObjectNN OBJ_ONLY classification from a ConceptDistill pre-trained backbone export.
#   python tools/train.py configs/classification/ppt-12x384_concept-distill_1xb32-300e_scanobjectnn-obj-only.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=<backbone export .pth>
_base_ = ['./ppt-12x384_1xb32-300e_scanobjectnn-obj-only.py']

pretrained_backbone = ('work_dirs/ppt-12x384_concept-distill_8xb8-100e_shapenet55-views/'
                       'backbone_latest.pth')
model = dict(backbone=dict(
    init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone, prefix='backbone.')))
custom_hooks = [dict(type='PretrainedBackboneCheckHook')]
