"""Keeping the points a frame sees and recording the pixel each one lands on."""
from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from concept_distill.datasets.frame_pairs import PAIRS_KEY
from concept_distill.datasets.frustum_pairing import PairedDataError, visible_points

UV_ATTR = 'pixel_uv'


@TRANSFORMS.register_module()
class FrustumPointPairing(BaseTransform):
    """Select the points of `points` that the frame sees, subsample, attach pixel coordinates.

    Uses `lidar2img` (points -> pixels of `img`, after any resize/crop), `img_shape` and,
    when present, `depth_map` with `lidar2depth` for the occlusion test. The pixel (u, v) of
    each kept point (OpenCV convention, see `frustum_pairing`) is appended to the points as
    the attribute `pixel_uv`, so later 3D transforms (flip, rotation, sampling) keep it in
    step with its point; `PackPairedInputs` moves it to `data_samples.pixel_uv`. When
    `LoadScenePoints(precomputed_pairs=True)` opened the frame's precomputed pairs, it samples
    among the stored visible points instead (same result; `load_precomputed_pairs.py`).

    Args:
        num_points: points per sample (sampled without replacement, or all plus repeats when
            fewer are visible); None keeps every visible point.
        depth_range: (near, far) metres along the optical axis.
        occlusion_tol: metres a point may differ from the depth reading at its pixel.
        keep_missing_depth: keep points whose pixel has no depth reading.
        min_points: fewer visible points raise `PairedDataError` ('too_few_points'); the paired
            dataset then counts the frame and replaces it by another.
    """

    def __init__(self, num_points: int | None = 20000,
                 depth_range: tuple[float, float] = (0.1, 10.0), occlusion_tol: float = 0.1,
                 keep_missing_depth: bool = False, min_points: int = 100) -> None:
        self.num_points = num_points
        self.depth_range = tuple(depth_range)
        self.occlusion_tol = occlusion_tol
        self.keep_missing_depth = keep_missing_depth
        self.min_points = min_points

    def transform(self, results: dict) -> dict:
        pairs = results.pop(PAIRS_KEY, None)
        if pairs is not None:  # precomputed at preparation, opened by LoadScenePoints
            return pairs.pair(results, self)
        points = results['points']
        xyz = points.coord.numpy()
        idx, uv = visible_points(
            xyz, np.asarray(results['lidar2img']), results['img_shape'][:2], self.depth_range,
            results.get('depth_map'), _maybe(results.get('lidar2depth')), self.occlusion_tol,
            self.keep_missing_depth)
        results['num_visible_points'] = len(idx)
        self.check_visible(len(idx), results)
        pick = self.pick(len(idx))
        if pick is not None:
            idx, uv = idx[pick], uv[pick]
        results['points'] = append_uv(points[idx], uv)
        return results

    def check_visible(self, count: int, results: dict) -> None:
        """Raise `PairedDataError` ('too_few_points') when fewer than `min_points` are seen."""
        if count < max(self.min_points, 1):
            frame = results.get('frame_id', results.get('img_path'))
            raise PairedDataError(
                f'frame {frame} sees {count} points (< min_points={self.min_points})',
                results.get('img_path'), 'too_few_points')

    def pick(self, count: int) -> np.ndarray | None:
        """Positions of the sampled points among `count` visible ones (None: keep all)."""
        if self.num_points is None:
            return None
        if count >= self.num_points:
            return np.random.choice(count, self.num_points, replace=False)
        extra = np.random.choice(count, self.num_points - count, replace=True)
        return np.concatenate([np.arange(count), extra])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_points={self.num_points}, '
                f'depth_range={self.depth_range}, occlusion_tol={self.occlusion_tol}, '
                f'min_points={self.min_points})')


def _maybe(m):
    return None if m is None else np.asarray(m, dtype=np.float64)


def append_uv(points, uv: np.ndarray):
    """Points (mmdet3d BasePoints) with two more columns, the attribute `pixel_uv`."""
    dim = points.points_dim
    tensor = torch.cat([points.tensor, torch.as_tensor(uv, dtype=points.tensor.dtype)], dim=1)
    attrs = dict(points.attribute_dims or {})
    attrs[UV_ATTR] = [dim, dim + 1]
    return type(points)(tensor, points_dim=dim + 2, attribute_dims=attrs)


def split_uv(points) -> tuple[object, torch.Tensor]:
    """Inverse of `append_uv`: (points without the uv columns, uv (N, 2))."""
    attrs = dict(points.attribute_dims or {})
    cols = attrs.pop(UV_ATTR)
    keep = [c for c in range(points.points_dim) if c not in cols]
    # Attribute columns after the removed ones shift left by two.
    remap = {old: new for new, old in enumerate(keep)}
    attrs = {k: ([remap[c] for c in v] if isinstance(v, list) else remap[v])
             for k, v in attrs.items()}
    rest = type(points)(points.tensor[:, keep], points_dim=len(keep),
                        attribute_dims=attrs or None)
    return rest, points.tensor[:, cols].clone()
