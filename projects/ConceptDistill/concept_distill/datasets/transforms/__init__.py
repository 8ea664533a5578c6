"""Data transforms (registered in mmdet3d's TRANSFORMS): the paired 2D-3D pipeline and
3DETR's RandomCuboid3D."""
from concept_distill.datasets.transforms.frustum_point_pairing import FrustumPointPairing
from concept_distill.datasets.transforms.load_paired_image import LoadPairedImage
from concept_distill.datasets.transforms.load_scene_points import LoadScenePoints
from concept_distill.datasets.transforms.load_teacher_features import LoadTeacherFeatures
from concept_distill.datasets.transforms.pack_paired_inputs import PackPairedInputs
from concept_distill.datasets.transforms.paired_point_augment import PairedPointAugment
from concept_distill.datasets.transforms.random_cuboid import RandomCuboid3D
from concept_distill.datasets.transforms.resize_crop_for_teacher import ResizeCropForTeacher

__all__ = ['FrustumPointPairing', 'LoadPairedImage', 'LoadScenePoints', 'LoadTeacherFeatures',
           'PackPairedInputs', 'PairedPointAugment', 'RandomCuboid3D', 'ResizeCropForTeacher']
