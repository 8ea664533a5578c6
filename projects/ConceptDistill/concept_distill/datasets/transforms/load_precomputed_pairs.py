"""Pairing from precomputed frame pairs: the scene memory-mapped, one gather of the kept points.

`LoadScenePoints(precomputed_pairs=True)` opens a frame's pairs file (`datasets/frame_pairs.py`)
instead of reading its scene; `LoadPairedImage` then skips the depth frame (the occlusion test
ran at preparation); `FrustumPointPairing` samples among the stored visible points, gathers
only those rows from the memory-mapped scene and projects them with the current `lidar2img`.
Frames without a pairs file take the online path. Same visible set, same sampling, same
float32 projection: the two paths give the same pairs (tests/test_datasets/
test_precomputed_pairs.py).
"""
from __future__ import annotations

import mmap

import numpy as np
from mmdet3d.structures.points import get_points_type

from concept_distill.datasets.frame_pairs import (
    PrecomputedPairsError,
    matrix_differs,
    pairing_params,
    pairs_path,
    params_mismatch,
    read_frame_pairs,
)
from concept_distill.datasets.frustum_pairing import PairedDataError, inside_image, project
from concept_distill.datasets.transforms.frustum_point_pairing import append_uv

_REDO = ('re-run `python tools/create_data.py pairs` with the pipeline\'s values, or set '
         'LoadScenePoints(precomputed_pairs=False)')


def map_points(path: str, load_dim: int) -> np.ndarray:
    """(N, load_dim) float32 view of a point file, memory-mapped (read-only)."""
    try:
        # mmap + frombuffer rather than np.memmap: same mapping, a fraction of the set-up
        # cost, which is paid once per sample.
        with open(path, 'rb') as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as err:
        raise PairedDataError(f'point file not found: {path}', path, 'missing_points') from err
    except (OSError, ValueError) as err:  # e.g. an empty file cannot be mapped
        raise PairedDataError(f'cannot read point file {path}: {err}', path,
                              'corrupt_points') from err
    if len(buf) % (4 * load_dim):
        raise PairedDataError(
            f'corrupt point file {path}: {len(buf) // 4} float32 values are not a whole '
            f'number of {load_dim}-value points', path, 'corrupt_points')
    return np.frombuffer(buf, dtype=np.float32).reshape(-1, load_dim)


def _inverse3(m: np.ndarray) -> np.ndarray:
    """Inverse of a 3x3 matrix by its adjugate (LAPACK's set-up costs more at this size)."""
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    adj = np.array([[e * i - f * h, c * h - b * i, b * f - c * e],
                    [f * g - d * i, a * i - c * g, c * d - a * f],
                    [d * h - e * g, b * g - a * h, a * e - b * d]])
    return adj / (a * adj[0, 0] + b * adj[1, 0] + c * adj[2, 0])


class PrecomputedPairs:
    """One frame's precomputed pairs and its memory-mapped scene (see the module docstring)."""

    def __init__(self, path: str, header: dict, visible: np.ndarray, points: np.ndarray,
                 loader) -> None:
        self.path = path
        self.header = header
        self.visible = visible
        self.points = points
        self.loader = loader
        # Set by LoadPairedImage when the pipeline asks for the depth test (it then does not
        # decode the depth frame): must match the preparation's.
        self.occlusion_test = False

    def _error(self, name: str, stored, expected, what: str = 'the pipeline has',
               redo: str = _REDO) -> PrecomputedPairsError:
        return PrecomputedPairsError(f'{self.path}: precomputed with {name}={stored!r} but '
                                     f'{what} {name}={expected!r}; {redo}')

    @classmethod
    def open(cls, results: dict, loader) -> PrecomputedPairs | None:
        """The frame's pairs checked against its infos (None when it has no pairs file)."""
        img_path = results.get('img_path')
        if not img_path:
            return None
        path = pairs_path(img_path)
        try:
            header, visible = read_frame_pairs(path)
        except FileNotFoundError:
            return None
        redo = 're-run `python tools/create_data.py pairs` (the infos or points changed)'
        frame, scene = header['frame'], header['scene']
        for key in ('lidar2img', 'lidar2depth'):
            if matrix_differs(frame.get(key), results.get(key)):
                raise PrecomputedPairsError(
                    f'{path}: precomputed with another {key} than the infos give for frame '
                    f"{results.get('frame_id')} (stored {frame.get(key)}, now "
                    f'{_listed(results.get(key))}); {redo}')
        pts_path = results['lidar_points']['lidar_path']
        points = map_points(pts_path, loader.load_dim)
        self = cls(path, header, visible, points, loader)
        if scene['load_dim'] != loader.load_dim:
            raise self._error('load_dim', scene['load_dim'], loader.load_dim,
                              'LoadScenePoints has')
        if len(points) != scene['num_points']:
            raise self._error('num_points', scene['num_points'], len(points),
                              f'{pts_path} now holds', redo)
        if frame.get('depth_shift') != results.get('depth_shift'):
            raise self._error('depth_shift', frame.get('depth_shift'),
                              results.get('depth_shift'), 'the infos give', redo)
        return self

    def check(self, results: dict, pairing) -> None:
        """The pipeline's pairing parameters and image must be those of the preparation."""
        want = pairing_params(pairing.depth_range, self.occlusion_test, pairing.occlusion_tol,
                              pairing.keep_missing_depth)
        diff = params_mismatch(self.header['params'], want)
        if diff is not None:
            where = ('LoadPairedImage (with_depth) and the frame asks for'
                     if diff[0] == 'occlusion_test' else 'FrustumPointPairing has')
            raise self._error(*diff, where)
        size = list(results['ori_shape'][:2])
        if self.header['frame']['image_hw'] != size:
            raise self._error('image_hw', self.header['frame']['image_hw'], size,
                              'the image now has', 're-run `python tools/create_data.py pairs`')

    def _covers_frame(self, lidar2img: np.ndarray, height: int, width: int) -> bool:
        """Whether the current image holds the whole prepared frame (no crop since)."""
        # lidar2img[:3] = [pixel map] @ prepared lidar2img[:3]: recover the pixel map from the
        # 3x3 blocks (intrinsics @ rotation, invertible), move the frame's corners with it.
        prepared = np.asarray(self.header['frame']['lidar2img'], dtype=np.float64)
        pix = lidar2img[:3, :3] @ _inverse3(prepared[:3, :3])
        h0, w0 = self.header['frame']['image_hw']
        corners = np.array([[-0.5, -0.5, 1], [w0 - 0.5, -0.5, 1], [-0.5, h0 - 0.5, 1],
                            [w0 - 0.5, h0 - 0.5, 1]]) @ pix.T
        uv = corners[:, :2] / corners[:, 2:]
        eps = 1e-6 * max(height, width)
        return bool((uv[:, 0] >= -0.5 - eps).all() and (uv[:, 0] <= width - 0.5 + eps).all()
                    and (uv[:, 1] >= -0.5 - eps).all()
                    and (uv[:, 1] <= height - 0.5 + eps).all())

    def pair(self, results: dict, pairing) -> dict:
        """FrustumPointPairing's output from the stored pairs (same sampling, one gather)."""
        self.check(results, pairing)
        lidar2img = np.asarray(results['lidar2img'], dtype=np.float64)
        h, w = results['img_shape'][:2]
        visible, rows = self.visible, None
        if not self._covers_frame(lidar2img, h, w):
            # A crop: keep the stored points that project inside it, as the online test does.
            rows = np.take(self.points, visible, axis=0)
            inside = inside_image(project(rows, lidar2img)[0], h, w)
            visible, rows = visible[inside], rows[inside]
        results['num_visible_points'] = len(visible)
        pairing.check_visible(len(visible), results)
        pick = pairing.pick(len(visible))
        if rows is None:
            rows = np.take(self.points, visible if pick is None else visible[pick], axis=0)
        elif pick is not None:
            rows = np.take(rows, pick, axis=0)
        uv, _ = project(rows, lidar2img)
        results['points'] = append_uv(self._as_points(rows), uv)
        return results

    def _as_points(self, rows: np.ndarray):
        """The rows as LoadPointsFromFile makes points, with the whole scene's floor height."""
        loader = self.loader
        points = rows[:, loader.use_dim]
        if loader.norm_intensity:
            points[:, 3] = np.tanh(points[:, 3])
        if loader.norm_elongation:
            points[:, 4] = np.tanh(points[:, 4])
        attribute_dims = None
        if loader.shift_height:
            scene = self.header['scene']
            # mmdet3d takes the floor over the whole scene, so it was stored with its dtype.
            floor = np.dtype(scene['floor_dtype']).type(scene['floor_height'])
            height = points[:, 2] - floor
            points = np.concatenate([points[:, :3], height[:, None], points[:, 3:]], 1)
            attribute_dims = dict(height=3)
        if loader.use_color:
            attribute_dims = dict(attribute_dims or {})
            attribute_dims['color'] = [points.shape[1] - 3, points.shape[1] - 2,
                                       points.shape[1] - 1]
        return get_points_type(loader.coord_type)(points, points_dim=points.shape[-1],
                                                  attribute_dims=attribute_dims)


def _listed(m):
    return None if m is None else np.asarray(m).tolist()
