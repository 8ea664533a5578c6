"""Loading an object's ``.npy`` point cloud (ShapeNet-55's format) for the paired pipeline."""
from __future__ import annotations

import os

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures.points import get_points_type

from concept_distill.datasets.frustum_pairing import PairedDataError


def read_npy_points(path: str) -> np.ndarray:
    """(N, C >= 3) float32 of a ``.npy`` file; `PairedDataError` naming it when it is missing,
    not a numeric (N, C >= 3) array, empty or non-finite."""
    if not os.path.isfile(path):
        raise PairedDataError(f'point file not found: {path}', path, 'missing_points')
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise PairedDataError(f'cannot read point file {path} as .npy: {err}', path,
                              'corrupt_points') from err
    if arr.ndim != 2 or arr.shape[1] < 3 or len(arr) == 0 or arr.dtype.kind not in 'fiu':
        raise PairedDataError(f'point file {path} holds a {arr.dtype} array of shape '
                              f'{arr.shape}, not (N, 3+) numbers', path, 'corrupt_points')
    arr = arr.astype(np.float32)
    if not np.isfinite(arr[:, :3]).all():
        raise PairedDataError(f'non-finite coordinates in point file {path}', path,
                              'corrupt_points')
    return arr


@TRANSFORMS.register_module()
class LoadObjectPoints(BaseTransform):
    """`points` (mmdet3d points of `coord_type`) from the ``.npy`` at `lidar_path`.

    Args:
        use_dim: columns kept (default: x, y, z).
        coord_type: mmdet3d points type ('DEPTH', 'LIDAR' or 'CAMERA'); only the class
            changes, the stored frame is kept (the views' cameras are in it).
    """

    def __init__(self, use_dim: tuple[int, ...] = (0, 1, 2), coord_type: str = 'DEPTH') -> None:
        self.use_dim = list(use_dim)
        self.coord_type = coord_type

    def transform(self, results: dict) -> dict:
        path = results['lidar_path']
        arr = read_npy_points(path)
        if max(self.use_dim) >= arr.shape[1]:
            raise PairedDataError(f'point file {path} has {arr.shape[1]} columns; use_dim '
                                  f'{self.use_dim} needs more', path, 'corrupt_points')
        pts = arr[:, self.use_dim]
        results['points'] = get_points_type(self.coord_type)(pts, points_dim=pts.shape[1])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(use_dim={self.use_dim}, coord_type={self.coord_type!r})'
