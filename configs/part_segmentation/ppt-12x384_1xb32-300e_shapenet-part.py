# ShapeNetPart part segmentation (2,048 points), point-patch transformer from scratch.
#   python tools/train.py configs/part_segmentation/ppt-12x384_1xb32-300e_shapenet-part.py
_base_ = ['./_base_/ppt-12x384_part-segmentor.py', './_base_/shapenet-part-2k.py',
          '../classification/_base_/object-finetune-300e.py']

# The project runtime imports concept_distill; the object track's modules register on import.
custom_imports = dict(
    imports=['concept_distill', 'concept_distill.datasets.object_datasets',
             'concept_distill.models.part_segmentation',
             'concept_distill.evaluation.part_seg_metric'],
    allow_failed_imports=False)
