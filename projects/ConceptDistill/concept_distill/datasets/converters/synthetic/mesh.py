"""Triangle-soup meshes for synthetic rooms: primitives, merging and surface sampling."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Directional light used to bake a per-face shade into both points and images, so the colour
# of a sampled point and the pixel it projects to agree exactly (up to JPEG noise).
LIGHT_DIR = np.array([0.35, 0.55, 1.0]) / np.linalg.norm([0.35, 0.55, 1.0])


@dataclass
class TriMesh:
    """Triangles with per-face colour, texture, labels and a sampling flag."""

    tris: np.ndarray  # (T, 3, 3) float64 vertices, counter-clockwise seen from outside
    color: np.ndarray  # (T, 3) base colour 0-1
    tex_amp: np.ndarray  # (T,) amplitude of the procedural texture
    tex_freq: np.ndarray  # (T,) spatial frequency (rad/m) of the texture
    instance: np.ndarray  # (T,) instance id (1-based; 0 = none)
    semantic: np.ndarray  # (T,) NYU40 id
    sample: np.ndarray = field(default=None)  # (T,) bool: surface is part of the scanned cloud

    def __post_init__(self) -> None:
        if self.sample is None:
            self.sample = np.ones(len(self.tris), dtype=bool)

    def __len__(self) -> int:
        return len(self.tris)

    @staticmethod
    def concat(meshes: list[TriMesh]) -> TriMesh:
        """Merge meshes into one."""
        keys = ('tris', 'color', 'tex_amp', 'tex_freq', 'instance', 'semantic', 'sample')
        return TriMesh(*[np.concatenate([getattr(m, k) for m in meshes]) for k in keys])

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> TriMesh:
        """Rigidly moved copy (rot 3x3, trans 3)."""
        out = TriMesh(**{k: getattr(self, k).copy() for k in self.__dataclass_fields__})
        out.tris = self.tris @ rot.T + trans
        return out

    def labelled(self, instance: int, semantic: int) -> TriMesh:
        """Copy with every face given one instance and semantic id."""
        out = TriMesh(**{k: getattr(self, k).copy() for k in self.__dataclass_fields__})
        out.instance[:] = instance
        out.semantic[:] = semantic
        return out

    def normals(self) -> np.ndarray:
        """Unit face normals (T, 3)."""
        n = np.cross(self.tris[:, 1] - self.tris[:, 0], self.tris[:, 2] - self.tris[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def areas(self) -> np.ndarray:
        """Face areas (T,)."""
        n = np.cross(self.tris[:, 1] - self.tris[:, 0], self.tris[:, 2] - self.tris[:, 0])
        return 0.5 * np.linalg.norm(n, axis=1)

    def shade(self) -> np.ndarray:
        """Baked Lambert-plus-ambient shade per face (T,)."""
        return 0.62 + 0.38 * np.abs(self.normals() @ LIGHT_DIR)


def surface_color(mesh: TriMesh, face: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Colour (0-1) of surface points `xyz` lying on faces `face`: base x shade x texture.

    The same function colours sampled points and rendered pixels, which is what makes the
    synthetic point-to-pixel pairing exact.
    """
    f = mesh.tex_freq[face][:, None]
    tex = 1.0 + mesh.tex_amp[face] * (
        np.sin(f[:, 0] * xyz[:, 0]) * np.cos(f[:, 0] * xyz[:, 1]) + np.sin(f[:, 0] * xyz[:, 2])
    ) * 0.5
    rgb = mesh.color[face] * (mesh.shade()[face] * tex)[:, None]
    return np.clip(rgb, 0.0, 1.0)


def _mesh(tris: list, color, tex_amp: float, tex_freq: float,
          sample: list | None = None) -> TriMesh:
    tris = np.asarray(tris, dtype=np.float64).reshape(-1, 3, 3)
    n = len(tris)
    return TriMesh(
        tris=tris,
        color=np.tile(np.asarray(color, dtype=np.float64), (n, 1)),
        tex_amp=np.full(n, tex_amp),
        tex_freq=np.full(n, tex_freq),
        instance=np.zeros(n, dtype=np.int64),
        semantic=np.zeros(n, dtype=np.int64),
        sample=np.ones(n, dtype=bool) if sample is None else np.asarray(sample, dtype=bool),
    )


def quad(corners: np.ndarray, color, tex_amp: float = 0.06, tex_freq: float = 6.0) -> TriMesh:
    """Two triangles of the planar quad `corners` (4, 3), counter-clockwise from the front."""
    c = np.asarray(corners, dtype=np.float64)
    return _mesh([[c[0], c[1], c[2]], [c[0], c[2], c[3]]], color, tex_amp, tex_freq)


def box(lo, hi, color, tex_amp: float = 0.06, tex_freq: float = 9.0,
        skip: tuple[str, ...] = ()) -> TriMesh:
    """Axis-aligned box [lo, hi] with outward faces; `skip` drops faces from the point cloud.

    Face names: '-x', '+x', '-y', '+y', '-z', '+z'. Skipped faces (touching the floor or a
    wall, so never seen by a scanner) are still rendered but yield no points.
    """
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    faces = {
        '-x': [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)],
        '+x': [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
        '-y': [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)],
        '+y': [(x0, y1, z0), (x0, y1, z1), (x1, y1, z1), (x1, y1, z0)],
        '-z': [(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)],
        '+z': [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)],
    }
    tris, sample = [], []
    for name, c in faces.items():
        tris += [[c[0], c[1], c[2]], [c[0], c[2], c[3]]]
        sample += [name not in skip] * 2
    return _mesh(tris, color, tex_amp, tex_freq, sample)


def cylinder(cx: float, cy: float, z0: float, z1: float, radius: float, color,
             segments: int = 14, tex_amp: float = 0.06, tex_freq: float = 9.0,
             top: bool = True) -> TriMesh:
    """Vertical cylinder (side and, optionally, top cap; the bottom rests on something)."""
    ang = np.linspace(0, 2 * np.pi, segments + 1)
    ring = np.stack([cx + radius * np.cos(ang), cy + radius * np.sin(ang)], axis=1)
    tris = []
    for i in range(segments):
        a, b = ring[i], ring[i + 1]
        p00, p10 = (a[0], a[1], z0), (b[0], b[1], z0)
        p01, p11 = (a[0], a[1], z1), (b[0], b[1], z1)
        tris += [[p00, p10, p11], [p00, p11, p01]]
        if top:
            tris.append([(cx, cy, z1), p01, p11])
    return _mesh(tris, color, tex_amp, tex_freq)


def sample_surface(mesh: TriMesh, num_points: int, rng: np.random.Generator,
                   density: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on the sampled faces: (xyz (N, 3), face index (N,))."""
    weight = mesh.areas() * mesh.sample
    if density is not None:
        weight = weight * density
    prob = weight / weight.sum()
    face = rng.choice(len(mesh), size=num_points, p=prob)
    r1, r2 = rng.random(num_points), rng.random(num_points)
    s = np.sqrt(r1)
    b0, b1, b2 = 1.0 - s, s * (1.0 - r2), s * r2
    t = mesh.tris[face]
    xyz = b0[:, None] * t[:, 0] + b1[:, None] * t[:, 1] + b2[:, None] * t[:, 2]
    return xyz, face
