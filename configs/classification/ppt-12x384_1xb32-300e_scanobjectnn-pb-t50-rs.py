# ScanObjectNN PB_T50_RS classification (2,048 points), point-patch transformer from scratch.
#   python tools/train.py configs/classification/ppt-12x384_1xb32-300e_scanobjectnn-pb-t50-rs.py
_base_ = ['./_base_/ppt-12x384_classifier.py', './_base_/scanobjectnn-2k.py',
          './_base_/object-finetune-300e.py']

variant = 'PB_T50_RS'
num_classes = 15
model = dict(num_classes=num_classes, backbone=dict(num_groups=128, group_size=32))
train_dataloader = dict(dataset=dict(variant=variant))
val_dataloader = dict(dataset=dict(variant=variant))
test_dataloader = val_dataloader
