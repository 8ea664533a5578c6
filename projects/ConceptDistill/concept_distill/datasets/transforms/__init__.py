"""Transforms of the paired 2D-3D pipeline (registered in mmdet3d's TRANSFORMS)."""
from .frustum_point_pairing import FrustumPointPairing
from .load_paired_image import LoadPairedImage
from .load_scene_points import LoadScenePoints
from .load_teacher_features import LoadTeacherFeatures
from .pack_paired_inputs import PackPairedInputs
from .resize_crop_for_teacher import ResizeCropForTeacher

__all__ = ['FrustumPointPairing', 'LoadPairedImage', 'LoadScenePoints', 'LoadTeacherFeatures',
           'PackPairedInputs', 'ResizeCropForTeacher']
