"""Part segmentation (ShapeNetPart): the point part segmentor (registered)."""
from concept_distill.models import backbones  # noqa: F401  (PointPatchTransformer)
from concept_distill.models.object_data_preprocessor import ObjectDataPreprocessor
from concept_distill.models.part_segmentation.part_segmentor import (
    PointPartSegmentor,
    three_nn_interpolate,
)

__all__ = ['ObjectDataPreprocessor', 'PointPartSegmentor', 'three_nn_interpolate']
