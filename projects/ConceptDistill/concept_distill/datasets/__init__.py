"""What training reads: the paired-frame and whole-scene datasets, their transforms, the
point-to-pixel pairing and the teacher-feature cache (registered on import).

Offline preparation (ScanNet export, mmdet3d's converters, synthetic scenes, teacher-feature
extraction) lives in ``concept_distill.datasets.converters``.
"""
from concept_distill.datasets import object_datasets  # noqa: F401  (registers the object readers)
from concept_distill.datasets.frustum_pairing import (
    PairedDataError,
    color_agreement,
    visible_points,
)
from concept_distill.datasets.paired_frame_dataset import PairedFrameDataset
from concept_distill.datasets.teacher_cache import TeacherCacheError, TeacherFeatureCache
from concept_distill.datasets.transforms import (
    FrustumPointPairing,
    LoadPairedImage,
    LoadScenePoints,
    LoadTeacherFeatures,
    PackPairedInputs,
    RandomCuboid3D,
    ResizeCropForTeacher,
)
from concept_distill.datasets.whole_scene_seg_datasets import (
    S3DISWholeSceneSegDataset,
    ScanNetWholeSceneSegDataset,
)

__all__ = ['FrustumPointPairing', 'LoadPairedImage', 'LoadScenePoints', 'LoadTeacherFeatures',
           'PackPairedInputs', 'PairedDataError', 'PairedFrameDataset', 'RandomCuboid3D',
           'ResizeCropForTeacher', 'S3DISWholeSceneSegDataset', 'ScanNetWholeSceneSegDataset',
           'TeacherCacheError', 'TeacherFeatureCache', 'color_agreement', 'visible_points']
