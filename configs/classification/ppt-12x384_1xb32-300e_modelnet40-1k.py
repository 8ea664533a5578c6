# ModelNet40 classification (1,024 points), point-patch transformer from scratch.
#   python tools/train.py configs/classification/ppt-12x384_1xb32-300e_modelnet40-1k.py
#   python tools/test.py  <this config> <checkpoint> --cfg-options model.test_cfg.num_votes=10
_base_ = ['./_base_/ppt-12x384_classifier.py', './_base_/modelnet40-1k.py',
          './_base_/object-finetune-300e.py']
