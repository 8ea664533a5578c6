"""Offline data preparation (run by ``tools/create_data.py`` and
``tools/extract_teacher_features.py``, never by a training step): ScanNet raw scans, ``.sens``
frames and infos, mmdet3d's indoor converters, synthetic ScanNet-format scenes, teacher-feature
extraction."""
from concept_distill.datasets.converters import synthetic
from concept_distill.datasets.converters.synthetic import create_synthetic_scannet

__all__ = ['create_synthetic_scannet', 'synthetic']
