"""Object classification (ModelNet40, ScanObjectNN): the point classifier (registered)."""
from concept_distill.models import backbones  # noqa: F401  (PointPatchTransformer)
from concept_distill.models.classification.point_classifier import PointClassifier
from concept_distill.models.object_data_preprocessor import ObjectDataPreprocessor

__all__ = ['ObjectDataPreprocessor', 'PointClassifier']
