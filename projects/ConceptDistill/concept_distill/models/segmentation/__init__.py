"""Sparse-conv segmentation: CPU voxelisation, spconv on CPU, whole-scene seg datasets, and
the MinkUNet token adapter.

Importing this package makes mmdet3d's own, unmodified MinkUNet (spconv) configs run on CPU
tensors: ``Det3DDataPreprocessor``'s ``minkunet`` voxelisation stays on the input's device and
spconv layers use ``ConvAlgo.Native`` for CPU features. CUDA inputs are untouched. It also
makes spconv 2.x kernels load from plain state dicts (mmengine's ``Pretrained`` init with a
prefix), which mmdet3d's loader otherwise permutes and skips, and stops ``MinkUNetBackbone``
from mutating the channel lists of its config.
"""
from .cpu_voxelization import (
    device_aware_minkunet_voxelization_installed,
    install_device_aware_minkunet_voxelization,
    quantize_points,
    voxelize_minkunet,
)
from .minkunet_backbone_copy_args import install_minkunet_backbone_arg_copy
from .minkunet_token_adapter import MinkUNetTokenAdapter
from .spconv_cpu import install_spconv_cpu_dispatch, spconv_cpu_dispatch_installed
from .spconv_weight_loading import install_spconv_layout_aware_loading
from .whole_scene_seg_datasets import S3DISWholeSceneSegDataset, ScanNetWholeSceneSegDataset

install_device_aware_minkunet_voxelization()
install_spconv_cpu_dispatch()
install_minkunet_backbone_arg_copy()
install_spconv_layout_aware_loading()

__all__ = [
    'MinkUNetTokenAdapter',
    'S3DISWholeSceneSegDataset',
    'ScanNetWholeSceneSegDataset',
    'device_aware_minkunet_voxelization_installed',
    'install_device_aware_minkunet_voxelization',
    'install_minkunet_backbone_arg_copy',
    'install_spconv_cpu_dispatch',
    'install_spconv_layout_aware_loading',
    'quantize_points',
    'spconv_cpu_dispatch_installed',
    'voxelize_minkunet',
]
