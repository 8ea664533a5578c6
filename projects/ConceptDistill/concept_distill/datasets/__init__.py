"""Paired 2D-3D data, synthetic ScanNet-format scenes and the teacher-feature cache.

Importing this package registers its datasets and transforms in mmdet3d's registries.
"""
from . import synthetic
from .synthetic import create_synthetic_scannet

__all__ = ['create_synthetic_scannet', 'synthetic']
