"""Point-to-pixel geometry: which points a frame sees, and where they land in its image.

Pixel convention (OpenCV, as ScanNet's and SUN RGB-D's intrinsics): the centre of the pixel
in column j and row i is at (u, v) = (j, i), so a point projected to (u, v) reads pixel
(round(v), round(u)) and lies inside an (H, W) image when -0.5 <= u < W - 0.5 and
-0.5 <= v < H - 0.5.
"""
from __future__ import annotations

import numpy as np


class PairedDataError(RuntimeError):
    """A frame cannot be paired: a missing/corrupt file, a bad pose or too few points.

    `path` names the offending file (or frame) and `reason` is a short tag used to count skips.
    """

    def __init__(self, message: str, path: str | None = None, reason: str = 'bad_input'):
        super().__init__(message)
        self.path = path
        self.reason = reason


def as_mat4(m) -> np.ndarray:
    """3x3 or 4x4 (nested list or array) -> 4x4 float64 array."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):
        out = np.eye(4)
        out[:3, :3] = m
        return out
    if m.shape != (4, 4):
        raise ValueError(f'expected a 3x3 or 4x4 matrix, got shape {m.shape}')
    return m


def project(xyz: np.ndarray, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) points with a 4x4 points->pixels matrix: (uv (N, 2), depth (N,)).

    `proj` is intrinsics @ world-to-camera, so the third homogeneous coordinate is the depth
    along the optical axis. Points at depth <= 0 get uv = nan.
    """
    # float32 throughout: converting a 100k-point cloud to float64 costs more than the whole
    # projection, and float32 keeps pixel coordinates to ~1e-3 px.
    xt = np.ascontiguousarray(np.asarray(xyz)[:, :3].T, dtype=np.float32)
    m = np.asarray(proj, dtype=np.float64)
    uvw = m[:3, :3].astype(np.float32) @ xt + m[:3, 3:4].astype(np.float32)
    z = uvw[2]
    with np.errstate(divide='ignore', invalid='ignore'):
        uv = (uvw[:2] / z).T
    uv[z <= 0] = np.nan
    return uv, z


def inside_image(uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of projections that fall on a pixel of an (H, W) image."""
    with np.errstate(invalid='ignore'):
        return ((uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5)
                & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5))


def pixel_index(uv: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) integer pixel of each projection (clipped into the image)."""
    col = np.clip(np.floor(uv[:, 0] + 0.5).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor(uv[:, 1] + 0.5).astype(np.int64), 0, height - 1)
    return row, col


def visible_points(xyz: np.ndarray, lidar2img: np.ndarray, img_hw: tuple[int, int],
                   depth_range: tuple[float, float] = (0.1, 10.0),
                   depth_map: np.ndarray | None = None,
                   lidar2depth: np.ndarray | None = None,
                   occlusion_tol: float = 0.1,
                   keep_missing_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the points a frame sees and their pixel coordinates in its image.

    A point is kept when it projects inside the image, its depth lies in `depth_range`, and,
    when a depth map is given, its depth agrees with the depth reading at its pixel within
    `occlusion_tol` metres (points hidden behind a nearer surface fail this test). Pixels
    without a reading (0) keep their points only when `keep_missing_depth`.
    Returns (index (M,), uv (M, 2) float).
    """
    uv, z = project(xyz, lidar2img)
    keep = (z >= depth_range[0]) & (z <= depth_range[1]) & inside_image(uv, *img_hw)
    idx = np.nonzero(keep)[0]
    if depth_map is not None and len(idx):
        proj = lidar2img if lidar2depth is None else lidar2depth
        duv, dz = project(xyz[idx], proj)
        dh, dw = depth_map.shape[:2]
        on_map = inside_image(duv, dh, dw)
        row, col = pixel_index(np.nan_to_num(duv), dh, dw)
        reading = depth_map[row, col]
        agree = np.abs(reading - dz) <= occlusion_tol
        ok = on_map & np.where(reading > 0, agree, keep_missing_depth)
        idx = idx[ok]
    return idx, uv[idx]


def sample_pixels(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Colours (M, C) of the pixels that projections `uv` land on (nearest pixel)."""
    row, col = pixel_index(uv, img.shape[0], img.shape[1])
    return img[row, col]


def color_agreement(point_rgb: np.ndarray, img: np.ndarray, uv: np.ndarray) -> float:
    """Mean absolute RGB difference (0-1 scale) between points and the pixels they hit.

    Point colours may be on a 0-1 or a 0-255 scale (decided from their range); the image is
    uint8 RGB.
    """
    rgb = np.asarray(point_rgb, dtype=np.float64)
    if rgb.size and rgb.max() > 1.0 + 1e-6:
        rgb = rgb / 255.0
    pix = sample_pixels(img, uv).astype(np.float64) / 255.0
    return float(np.abs(rgb - pix).mean()) if len(rgb) else float('nan')
