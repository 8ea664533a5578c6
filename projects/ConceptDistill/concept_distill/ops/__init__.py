"""CPU implementations of operators other libraries only have on CUDA.

``cpu_point_ops``: mmcv's point operators (kernels in ``kernels/``, by family);
``voxelization``: MinkUNet's voxelisation on the points' device. ``concept_distill.patches``
routes the libraries' calls here for CPU tensors.
"""
from concept_distill.ops import cpu_point_ops, voxelization
from concept_distill.ops.voxelization import quantize_points, voxelize_minkunet

__all__ = ['cpu_point_ops', 'quantize_points', 'voxelization', 'voxelize_minkunet']
