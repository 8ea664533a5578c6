"""Object-level datasets (ModelNet40, ScanObjectNN, ShapeNetPart) in their real layouts, the
ShapeNet-55 (points, rendered view) pre-training pairs, and their single-object transforms
(registered in mmdet3d's DATASETS / TRANSFORMS on import)."""
from concept_distill.datasets.object_datasets.base import ObjectDataError, ObjectPointDataset
from concept_distill.datasets.object_datasets.fewshot_dataset import FewShotObjectDataset
from concept_distill.datasets.object_datasets.load_object_points import LoadObjectPoints
from concept_distill.datasets.object_datasets.modelnet40 import (
    MODELNET40_CLASSES,
    ModelNet40Dataset,
    ModelNet40H5Dataset,
)
from concept_distill.datasets.object_datasets.object_transforms import (
    NormalizeObjectPoints,
    ObjectPointSample,
    ObjectRandomRotate,
    ObjectScaleTranslate,
    PackObjectInputs,
)
from concept_distill.datasets.object_datasets.object_view_pairs import (
    ShapeNet55ViewPairDataset,
    read_cameras,
)
from concept_distill.datasets.object_datasets.scanobjectnn import (
    SCANOBJECTNN_CLASSES,
    ScanObjectNNDataset,
)
from concept_distill.datasets.object_datasets.shapenet_part import (
    SHAPENET_PART_SEG_CLASSES,
    ShapeNetPartDataset,
)

__all__ = ['MODELNET40_CLASSES', 'SCANOBJECTNN_CLASSES', 'SHAPENET_PART_SEG_CLASSES',
           'FewShotObjectDataset', 'LoadObjectPoints',
           'ModelNet40Dataset', 'ModelNet40H5Dataset', 'NormalizeObjectPoints',
           'ObjectDataError', 'ObjectPointDataset', 'ObjectPointSample', 'ObjectRandomRotate',
           'ObjectScaleTranslate', 'PackObjectInputs', 'ScanObjectNNDataset',
           'ShapeNet55ViewPairDataset', 'ShapeNetPartDataset', 'read_cameras']
