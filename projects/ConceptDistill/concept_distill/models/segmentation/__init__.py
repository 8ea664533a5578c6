"""Sparse-conv segmentation: CPU voxelisation, spconv on CPU, whole-scene seg datasets, and
the MinkUNet token adapter.

Importing this package makes mmdet3d's own, unmodified MinkUNet (spconv) configs run on CPU
tensors: ``Det3DDataPreprocessor``'s ``minkunet`` voxelisation stays on the input's device and
spconv layers use ``ConvAlgo.Native`` for CPU features. CUDA inputs are untouched.
"""
from .cpu_voxelization import (
    device_aware_minkunet_voxelization_installed,
    install_device_aware_minkunet_voxelization,
    quantize_points,
    voxelize_minkunet,
)
from .minkunet_token_adapter import MinkUNetTokenAdapter
from .spconv_cpu import install_spconv_cpu_dispatch, spconv_cpu_dispatch_installed
from .whole_scene_seg_datasets import S3DISWholeSceneSegDataset, ScanNetWholeSceneSegDataset

install_device_aware_minkunet_voxelization()
install_spconv_cpu_dispatch()

__all__ = [
    'MinkUNetTokenAdapter',
    'S3DISWholeSceneSegDataset',
    'ScanNetWholeSceneSegDataset',
    'device_aware_minkunet_voxelization_installed',
    'install_device_aware_minkunet_voxelization',
    'install_spconv_cpu_dispatch',
    'quantize_points',
    'spconv_cpu_dispatch_installed',
    'voxelize_minkunet',
]
