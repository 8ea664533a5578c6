# ShapeNetPart part segmentation (2,048 points), point-patch transformer from scratch.
#   python tools/train.py configs/part_segmentation/ppt-12x384_1xb32-300e_shapenet-part.py
_base_ = ['./_base_/ppt-12x384_part-segmentor.py', './_base_/shapenet-part-2k.py',
          '../classification/_base_/object-finetune-300e.py']
