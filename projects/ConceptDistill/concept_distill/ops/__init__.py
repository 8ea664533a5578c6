"""CPU kernels for mmcv's point operators, installed on import.

Importing this package wraps mmcv's furthest point sampling (plain and with a distance
matrix), ball query, grouping, gather_points, three_nn, three_interpolate, knn and
points_in_boxes_all/part with a dispatch on the inputs' device: CPU tensors run the kernels in
``cpu_point_ops`` (same results as mmcv's CUDA kernels), CUDA tensors keep mmcv's kernels.
"""
from . import cpu_point_ops
from .point_op_dispatch import PROFILE_PREFIX, install_cpu_point_ops, is_installed

install_cpu_point_ops()

__all__ = ['PROFILE_PREFIX', 'cpu_point_ops', 'install_cpu_point_ops', 'is_installed']
