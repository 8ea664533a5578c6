"""Paired 2D-3D data, synthetic ScanNet-format scenes and the teacher-feature cache.

Importing this package registers its dataset and transforms in mmdet3d's registries.
"""
from . import synthetic
from .frustum_pairing import PairedDataError, color_agreement, visible_points
from .paired_frame_dataset import PairedFrameDataset
from .synthetic import create_synthetic_scannet
from .teacher_cache import TeacherCacheError, TeacherFeatureCache
from .transforms import (
                         FrustumPointPairing,
                         LoadPairedImage,
                         LoadScenePoints,
                         LoadTeacherFeatures,
                         PackPairedInputs,
                         ResizeCropForTeacher,
)

__all__ = ['FrustumPointPairing', 'LoadPairedImage', 'LoadScenePoints', 'LoadTeacherFeatures',
           'PackPairedInputs', 'PairedDataError', 'PairedFrameDataset', 'ResizeCropForTeacher',
           'TeacherCacheError', 'TeacherFeatureCache', 'color_agreement',
           'create_synthetic_scannet', 'synthetic', 'visible_points']
