"""A small z-buffer triangle rasteriser (numpy) for posed RGB-D frames of synthetic rooms.

Pixel convention (OpenCV, as ScanNet's intrinsics): the centre of the pixel in column j and
row i is at image coordinates (u, v) = (j, i); the rasteriser evaluates triangles at pixel
centres, so a point projected to (u, v) is seen by pixel (round(v), round(u)).
"""
from __future__ import annotations

import numpy as np

from concept_distill.datasets.converters.synthetic.mesh import TriMesh, surface_color

NEAR = 0.05


def _clip_near(tri: np.ndarray) -> list[np.ndarray]:
    """Clip one camera-space triangle against z = NEAR; 0, 1 or 2 triangles come back."""
    poly = []
    for k in range(3):
        a, b = tri[k], tri[(k + 1) % 3]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            poly.append(a)
        if a_in != b_in:
            t = (NEAR - a[2]) / (b[2] - a[2])
            poly.append(a + t * (b - a))
    return [np.stack([poly[0], poly[i], poly[i + 1]]) for i in range(1, len(poly) - 1)]


def rasterize(mesh: TriMesh, world2cam: np.ndarray, cam2img: np.ndarray,
              height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer render: (depth (H, W) metres, 0 = nothing; face index (H, W), -1 = nothing).

    `world2cam` is 4x4 (camera: x right, y down, z forward); `cam2img` holds the pinhole
    intrinsics in its upper-left 3x3.
    """
    fx, fy, cx, cy = cam2img[0, 0], cam2img[1, 1], cam2img[0, 2], cam2img[1, 2]
    cam = mesh.tris @ world2cam[:3, :3].T + world2cam[:3, 3]  # (T, 3, 3)
    # Cull faces turned away from the camera (the camera sits at the origin) ...
    normal = np.cross(cam[:, 1] - cam[:, 0], cam[:, 2] - cam[:, 0])
    front = np.einsum('tk,tk->t', normal, cam[:, 0]) < 0
    # ... and faces fully behind the near plane or outside one side of the frustum.
    z = cam[..., 2]
    zs = np.maximum(z, NEAR)
    u = fx * cam[..., 0] / zs + cx
    v = fy * cam[..., 1] / zs + cy
    all_in_front = (z > NEAR).all(axis=1)
    outside = ((z <= NEAR).all(axis=1)
               | (all_in_front & ((u < -1).all(axis=1) | (u > width).all(axis=1)
                                  | (v < -1).all(axis=1) | (v > height).all(axis=1))))
    keep = np.nonzero(front & ~outside)[0]

    inv_z = np.zeros((height, width), dtype=np.float64)  # 1/z buffer: larger is nearer
    face_id = np.full((height, width), -1, dtype=np.int64)
    for t in keep:
        parts = [cam[t]] if all_in_front[t] else _clip_near(cam[t])
        for tri in parts:
            _raster_triangle(tri, t, fx, fy, cx, cy, inv_z, face_id)
    depth = np.where(face_id >= 0, 1.0 / np.maximum(inv_z, 1e-12), 0.0)
    return depth, face_id


def _raster_triangle(tri: np.ndarray, t: int, fx: float, fy: float, cx: float, cy: float,
                     inv_z: np.ndarray, face_id: np.ndarray) -> None:
    height, width = inv_z.shape
    z = tri[:, 2]
    u = fx * tri[:, 0] / z + cx
    v = fy * tri[:, 1] / z + cy
    j0, j1 = max(int(np.ceil(u.min())), 0), min(int(np.floor(u.max())), width - 1)
    i0, i1 = max(int(np.ceil(v.min())), 0), min(int(np.floor(v.max())), height - 1)
    if j0 > j1 or i0 > i1:
        return
    area = (u[1] - u[0]) * (v[2] - v[0]) - (u[2] - u[0]) * (v[1] - v[0])
    if abs(area) < 1e-12:
        return
    jj, ii = np.meshgrid(np.arange(j0, j1 + 1, dtype=np.float64),
                         np.arange(i0, i1 + 1, dtype=np.float64))
    # Barycentric weights from edge functions, evaluated at pixel centres.
    w0 = ((u[1] - jj) * (v[2] - ii) - (u[2] - jj) * (v[1] - ii)) / area
    w1 = ((u[2] - jj) * (v[0] - ii) - (u[0] - jj) * (v[2] - ii)) / area
    w2 = 1.0 - w0 - w1
    eps = -1e-9
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    if not inside.any():
        return
    # 1/z is affine in screen space, so interpolating it is perspective-correct.
    iz = w0 / z[0] + w1 / z[1] + w2 / z[2]
    sub_iz = inv_z[i0:i1 + 1, j0:j1 + 1]
    win = inside & (iz > sub_iz)
    sub_iz[win] = iz[win]
    face_id[i0:i1 + 1, j0:j1 + 1][win] = t


def shade_image(mesh: TriMesh, depth: np.ndarray, face_id: np.ndarray, cam2world: np.ndarray,
                cam2img: np.ndarray, background=(0.55, 0.55, 0.58)) -> np.ndarray:
    """RGB uint8 image of the rendered frame, coloured with the point cloud's colour function."""
    height, width = depth.shape
    img = np.empty((height, width, 3), dtype=np.float64)
    img[:] = background
    i, j = np.nonzero(face_id >= 0)
    z = depth[i, j]
    x = (j - cam2img[0, 2]) * z / cam2img[0, 0]
    y = (i - cam2img[1, 2]) * z / cam2img[1, 1]
    world = np.stack([x, y, z], axis=1) @ cam2world[:3, :3].T + cam2world[:3, 3]
    img[i, j] = surface_color(mesh, face_id[i, j], world)
    return np.round(img * 255).astype(np.uint8)
