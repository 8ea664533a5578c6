"""Transforms of single-object clouds (numpy `points` (N, 3 + C); xyz first, normals next).

Per-point arrays (`part_labels`, `object_mask`) follow every re-sampling of the points.
Normalisation and the scale / shift / rotation augmentations also take mmdet3d points (the
object pairs' pipeline, after `FrustumPointPairing`): only xyz change, `pixel_uv` rides along.
"""
from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures.points import BasePoints
from mmengine.structures import BaseDataElement

PER_POINT_KEYS = ('points', 'part_labels', 'object_mask')


def farthest_point_indices(xyz: np.ndarray, num: int, start: int = 0) -> np.ndarray:
    """Indices of `num` farthest-point samples of (N, 3) `xyz`, starting from `start`."""
    n = len(xyz)
    out = np.empty(num, dtype=np.int64)
    dist = np.full(n, np.inf)
    cur = start
    for i in range(num):
        out[i] = cur
        dist = np.minimum(dist, ((xyz - xyz[cur]) ** 2).sum(axis=1))
        cur = int(dist.argmax())
    return out


@TRANSFORMS.register_module()
class ObjectPointSample(BaseTransform):
    """Keep `num_points` points: 'first' (the file's first rows, as PointNet++'s ModelNet
    loader), 'random' or 'fps'. Too few points: the cloud is repeated ('first'/'fps') or
    drawn with replacement ('random'). `deterministic`: the draw depends only on
    (`seed`, sample_idx), for reproducible evaluation."""

    def __init__(self, num_points: int, method: str = 'random', deterministic: bool = False,
                 seed: int = 0) -> None:
        if method not in ('first', 'random', 'fps'):
            raise ValueError(f"method must be 'first', 'random' or 'fps', got {method!r}")
        self.num_points, self.method = num_points, method
        self.deterministic, self.seed = deterministic, seed

    def _rng(self, results: dict) -> np.random.Generator:
        if self.deterministic:
            return np.random.default_rng([self.seed, int(results.get('sample_idx', 0))])
        return np.random.default_rng()

    def indices(self, n: int, xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The kept rows of an n-point cloud."""
        m = self.num_points
        if self.method == 'random':
            if n >= m:
                return rng.choice(n, m, replace=False)
            return np.concatenate([rng.permutation(n), rng.choice(n, m - n, replace=True)])
        if n < m:
            return np.resize(np.arange(n), m)
        if self.method == 'first':
            return np.arange(m)
        start = 0 if self.deterministic else int(rng.integers(n))
        return farthest_point_indices(xyz.astype(np.float64), m, start)

    def transform(self, results: dict) -> dict:
        """Re-sample the points and the per-point arrays alike."""
        pts = results['points']
        idx = self.indices(len(pts), pts[:, :3], self._rng(results))
        for k in PER_POINT_KEYS:
            if k in results:
                results[k] = results[k][idx]
        return results


@TRANSFORMS.register_module()
class NormalizeObjectPoints(BaseTransform):
    """Centre the xyz on their centroid and scale them into the unit sphere."""

    def transform(self, results: dict) -> dict:
        """Normalise `points[:, :3]` in place."""
        pts, _ = _point_array(results['points'])
        xyz = pts[:, :3] - pts[:, :3].mean(axis=0)
        radius = float(np.linalg.norm(xyz, axis=1).max())
        pts[:, :3] = xyz / max(radius, 1e-8)
        results['points'] = _like(results['points'], pts)
        return results


def _point_array(points) -> tuple[np.ndarray, bool]:
    """A float32 copy of numpy or mmdet3d points and whether columns 3:6 are normals.

    mmdet3d points (the paired object pipeline's) carry other attributes there (pixel_uv)."""
    if isinstance(points, BasePoints):
        return points.tensor.numpy().astype(np.float32, copy=True), False
    pts = np.asarray(points).astype(np.float32, copy=True)
    return pts, pts.shape[1] >= 6


def _like(points, pts: np.ndarray):
    """`pts` in the container type of `points` (numpy, or the same mmdet3d points class)."""
    if isinstance(points, BasePoints):
        return type(points)(torch.from_numpy(pts), points_dim=points.points_dim,
                            attribute_dims=points.attribute_dims)
    return pts


@TRANSFORMS.register_module()
class ObjectScaleTranslate(BaseTransform):
    """Random per-axis scale in `scale` and translation in [-translate, translate] (the
    object-classification recipe's augmentation); normals follow the scale."""

    def __init__(self, scale: tuple[float, float] = (2.0 / 3.0, 1.5),
                 translate: float = 0.2) -> None:
        self.scale, self.translate = scale, translate

    def transform(self, results: dict) -> dict:
        """Scale and shift xyz; re-normalise normals."""
        pts, normals = _point_array(results['points'])
        s = np.random.uniform(*self.scale, 3).astype(np.float32)
        t = np.random.uniform(-self.translate, self.translate, 3).astype(np.float32)
        pts[:, :3] = pts[:, :3] * s + t
        if normals:
            n = pts[:, 3:6] / s
            pts[:, 3:6] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-8)
        results['points'] = _like(results['points'], pts)
        return results


@TRANSFORMS.register_module()
class ObjectRandomRotate(BaseTransform):
    """Random rotation about one axis (default 1: the object frame's up axis y)."""

    def __init__(self, angle: tuple[float, float] = (-np.pi, np.pi), axis: int = 1) -> None:
        self.angle, self.axis = angle, axis

    def transform(self, results: dict) -> dict:
        """Rotate xyz (and normals)."""
        a = np.random.uniform(*self.angle)
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != self.axis]
        rot = np.eye(3, dtype=np.float32)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        pts, normals = _point_array(results['points'])
        pts[:, :3] = pts[:, :3] @ rot.T
        if normals:
            pts[:, 3:6] = pts[:, 3:6] @ rot.T
        results['points'] = _like(results['points'], pts)
        return results


@TRANSFORMS.register_module()
class PackObjectInputs(BaseTransform):
    """`inputs=dict(points=Tensor (N, 3 + C))` and a `BaseDataElement` data sample holding
    `gt_label` (long, shape (1,)), `gt_part` (long (N,)) and `object_mask` where present,
    and the metainfo `meta_keys` found in the results."""

    def __init__(self, meta_keys: tuple[str, ...] = ('sample_idx', 'shape_id', 'category',
                                                     'category_name', 'part_ids')) -> None:
        self.meta_keys = meta_keys

    def transform(self, results: dict) -> dict:
        """Tensors for the model and its data sample."""
        points = torch.from_numpy(np.ascontiguousarray(results['points'], dtype=np.float32))
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta['num_points'] = len(points)
        sample = BaseDataElement(metainfo=meta)
        if 'gt_label' in results:
            sample.gt_label = torch.tensor([int(results['gt_label'])], dtype=torch.long)
        if 'part_labels' in results:
            sample.gt_part = torch.from_numpy(np.asarray(results['part_labels'], np.int64))
        if 'object_mask' in results:
            sample.object_mask = torch.from_numpy(np.asarray(results['object_mask'], bool))
        return dict(inputs=dict(points=points), data_samples=sample)
