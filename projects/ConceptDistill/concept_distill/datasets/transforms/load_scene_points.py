"""Point loading that names the file when it is missing or corrupt."""
from __future__ import annotations

import os

import numpy as np
from mmdet3d.datasets.transforms import LoadPointsFromFile
from mmdet3d.registry import TRANSFORMS

from concept_distill.datasets.frame_pairs import PAIRS_KEY
from concept_distill.datasets.frustum_pairing import PairedDataError
from concept_distill.datasets.transforms.load_precomputed_pairs import PrecomputedPairs


@TRANSFORMS.register_module()
class LoadScenePoints(LoadPointsFromFile):
    """mmdet3d's `LoadPointsFromFile` (same arguments) with checked input.

    A missing file, a file whose size is not a whole number of `load_dim` float32 records,
    or non-finite coordinates raise `PairedDataError` naming the file, which the paired
    dataset counts and skips.

    With `precomputed_pairs=True`, a frame that has a pairs file (`tools/create_data.py
    pairs`) is not read here: the file is opened, checked against the frame's infos and the
    scene memory-mapped, and `FrustumPointPairing` gathers only the points it keeps. Put it
    before the image transforms (it checks the infos' own `lidar2img`).
    """

    def __init__(self, *args, precomputed_pairs: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if precomputed_pairs and list(self.use_dim[:3]) != [0, 1, 2]:
            raise ValueError('precomputed_pairs needs use_dim to start with x, y, z (0, 1, 2)')
        self.precomputed_pairs = precomputed_pairs

    def transform(self, results: dict) -> dict:
        """Load the scene's points, or open the frame's precomputed pairs."""
        if self.precomputed_pairs and self.backend_args is None:  # memory maps: local files
            pairs = PrecomputedPairs.open(results, self)
            if pairs is not None:
                results[PAIRS_KEY] = pairs
                return results
        return super().transform(results)

    def _load_points(self, pts_filename: str) -> np.ndarray:
        if self.backend_args is None and not os.path.isfile(pts_filename):
            raise PairedDataError(f'point file not found: {pts_filename}', pts_filename,
                                  'missing_points')
        try:
            points = super()._load_points(pts_filename)
        except (OSError, ValueError) as err:
            raise PairedDataError(f'cannot read point file {pts_filename}: {err}',
                                  pts_filename, 'corrupt_points') from err
        if points.size == 0 or points.size % self.load_dim:
            raise PairedDataError(
                f'corrupt point file {pts_filename}: {points.size} float32 values are not a '
                f'whole number of {self.load_dim}-value points', pts_filename, 'corrupt_points')
        xyz = points.reshape(-1, self.load_dim)[:, :3]
        if not np.isfinite(xyz).all():
            raise PairedDataError(f'non-finite coordinates in point file {pts_filename}',
                                  pts_filename, 'corrupt_points')
        return points
