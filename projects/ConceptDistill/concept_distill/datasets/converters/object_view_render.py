"""Rendering views of meshes into the object-pairs layout (``tools/render_object_views.py``).

For users who have meshes (ShapeNetCore ``.obj``, ModelNet ``.off``) and no renders: every
mesh under ``mesh_dir`` gets ``num_views`` views in ``<out_dir>/<key>/`` (``NN.png``,
``NN_depth.png``, ``cameras.json``: the layout `ShapeNet55ViewPairDataset` reads, see
docs/object_track.md). Cameras sit on a sphere round the mesh's bounding-box centre, at
azimuths spread evenly (jittered) and elevations in `elevation_deg`, looking at the centre.
``world2cam`` is written in the mesh file's own coordinates (it includes the scale that takes
the mesh into the unit sphere, so depth files are in those units), so points sampled from the
same mesh file project with ``cam2img @ world2cam``.

Keys: the mesh's path relative to ``mesh_dir`` without its suffix, folders joined by '-';
ShapeNetCore's ``<synset>/<model>/models/model_normalized.obj`` (v2) and
``<synset>/<model>/model.obj`` (v1) give ``<synset>-<model>``, ShapeNet-55's point-file name.

Shapes are rendered with the synthetic scenes' rasteriser (numpy, CPU), grey with the scenes'
baked directional shade, on white. A shape is complete when its ``cameras.json`` (written
last) lists all its views and they exist; a rerun skips complete shapes. ``out_dir`` holds
``.render_object_views.json`` (the parameters, written before the first shape): a non-empty
folder without it, or with other parameters, is refused unless `force`, which empties it.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.synthetic.mesh import TriMesh
from concept_distill.datasets.converters.synthetic.object_layouts import write_object_views
from concept_distill.datasets.converters.synthetic.objects import (
    ObjectView,
    look_at,
    object_intrinsics,
)
from concept_distill.datasets.converters.synthetic.rasterizer import rasterize, shade_image

MANIFEST = '.render_object_views.json'
MESH_SUFFIXES = ('.obj', '.off')
GREY = (0.72, 0.72, 0.72)
# Trailing path parts ShapeNetCore puts between the model id and its mesh file.
SHAPENET_TAILS = (('models', 'model_normalized'), ('model',))


class MeshError(ValueError):
    """A mesh file is missing, unreadable or not valid OBJ / OFF; names the file (and line)."""


class RenderOutputError(FileExistsError):
    """The output folder holds something other than this tool's result with these settings."""


# ----------------------------------------------------------------------------- mesh readers
def _obj_index(token: str, n_verts: int, where: str) -> int:
    """0-based vertex index of an OBJ face token ``v``, ``v/t``, ``v//n`` or ``v/t/n``."""
    try:
        i = int(token.split('/')[0])
    except ValueError as e:
        raise MeshError(f'{where}: bad face vertex {token!r}') from e
    k = i - 1 if i > 0 else n_verts + i  # negative indices count back from the last vertex
    if i == 0 or not 0 <= k < n_verts:
        raise MeshError(f'{where}: vertex index {i} outside the {n_verts} vertices so far')
    return k


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, triangles (T, 3) int64) of a Wavefront OBJ file.

    Reads ``v x y z [w]`` and ``f`` records (polygons fanned into triangles); other records
    (``vt``, ``vn``, groups, materials) are ignored."""
    verts, faces = [], []
    with open(path, errors='replace') as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts or parts[0] not in ('v', 'f'):
                continue
            where = f'{path}:{line_no}'
            if parts[0] == 'v':
                try:
                    verts.append([float(x) for x in parts[1:4]])
                except ValueError as e:
                    raise MeshError(f'{where}: bad vertex {line.strip()!r}') from e
                if len(verts[-1]) != 3:
                    raise MeshError(f'{where}: a vertex needs x y z')
            else:
                idx = [_obj_index(t, len(verts), where) for t in parts[1:]]
                if len(idx) < 3:
                    raise MeshError(f'{where}: a face needs at least 3 vertices')
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    return _checked(path, verts, faces)


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of an OFF file: ``OFF``, ``V F E``, V vertex rows, F face rows
    ``n i1 .. in`` (optional colour after). ModelNet's files that glue the counts to the
    header (``OFF490 518 0``) are read too."""
    with open(path, errors='replace') as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    rows = [(n, ln) for n, ln in enumerate(lines, 1) if ln]
    if not rows or not rows[0][1].startswith('OFF'):
        raise MeshError(f'{path}: not an OFF file (first line must start with OFF)')
    head = rows[0][1][3:].split()
    rows = rows[1:]
    if not head:
        if not rows:
            raise MeshError(f'{path}: no vertex/face counts after OFF')
        head, rows = rows[0][1].split(), rows[1:]
    try:
        n_v, n_f = int(head[0]), int(head[1])
    except (ValueError, IndexError) as e:
        raise MeshError(f'{path}: bad counts line {" ".join(head)!r} (want V F E)') from e
    if len(rows) < n_v + n_f:
        raise MeshError(f'{path}: header says {n_v} vertices + {n_f} faces, file has '
                        f'{len(rows)} rows')
    verts, faces = [], []
    for line_no, ln in rows[:n_v]:
        try:
            xyz = [float(x) for x in ln.split()[:3]]
        except ValueError as e:
            raise MeshError(f'{path}:{line_no}: bad vertex {ln!r}') from e
        if len(xyz) != 3:
            raise MeshError(f'{path}:{line_no}: a vertex needs x y z')
        verts.append(xyz)
    for line_no, ln in rows[n_v:n_v + n_f]:
        try:
            vals = [int(x) for x in ln.split()]
            n = vals[0]
            idx = vals[1:1 + n]
        except (ValueError, IndexError) as e:
            raise MeshError(f'{path}:{line_no}: bad face {ln!r}') from e
        if n < 3 or len(idx) != n or min(idx) < 0 or max(idx) >= n_v:
            raise MeshError(f'{path}:{line_no}: bad face {ln!r} ({n_v} vertices)')
        faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, n - 1)]
    return _checked(path, verts, faces)


def _checked(path, verts: list, faces: list) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(t):
        raise MeshError(f'{path}: no faces')
    if not np.isfinite(v).all():
        raise MeshError(f'{path}: non-finite vertex coordinates')
    return v, t


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of an ``.obj`` or ``.off`` file (by suffix)."""
    path = Path(path)
    if not path.is_file():
        raise MeshError(f'mesh file not found: {path}')
    readers = {'.obj': read_obj, '.off': read_off}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise MeshError(f'{path}: unknown mesh format (want one of {MESH_SUFFIXES})')
    return reader(path)


# ----------------------------------------------------------------------------- rendering
def shape_key(mesh_path: Path, mesh_dir: Path) -> str:
    """The shape's folder name: its relative path, ShapeNetCore's tails dropped, '-' joined."""
    parts = list(mesh_path.relative_to(mesh_dir).with_suffix('').parts)
    for tail in SHAPENET_TAILS:
        if len(parts) > len(tail) and tuple(parts[-len(tail):]) == tail:
            parts = parts[:-len(tail)]
            break
    return '-'.join(parts)


def find_meshes(mesh_dir: Path) -> dict[str, Path]:
    """Key -> mesh file for every ``.obj`` / ``.off`` under `mesh_dir` (sorted by key)."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in mesh_dir.rglob('*') if p.suffix.lower() in MESH_SUFFIXES):
        key = shape_key(path, mesh_dir)
        if key in found:
            raise MeshError(f'{path} and {found[key]} both give the shape key {key!r}')
        found[key] = path
    return dict(sorted(found.items()))


def _unit_sphere(verts: np.ndarray) -> np.ndarray:
    """4x4 similarity taking the mesh's bounding-box centre to 0 and its radius to 1."""
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    radius = float(np.linalg.norm(verts - centre, axis=1).max())
    if radius <= 0:
        raise MeshError('degenerate mesh (all vertices at one point)')
    m = np.eye(4)
    m[:3, :3] /= radius
    m[:3, 3] = -centre / radius
    return m


def render_mesh_views(verts: np.ndarray, tris: np.ndarray, num_views: int, image_size: int,
                      rng: np.random.Generator, distance: float = 2.5,
                      elevation_deg: tuple[float, float] = (10.0, 40.0),
                      up: str = 'y') -> list[ObjectView]:
    """`num_views` views of a mesh; cameras (world2cam) in the mesh file's coordinates."""
    norm = _unit_sphere(verts)
    unit = verts @ norm[:3, :3].T + norm[:3, 3]
    t = len(tris)
    one_side = TriMesh(unit[tris], np.tile(GREY, (t, 1)), np.zeros(t), np.ones(t),
                       np.zeros(t, np.int64), np.zeros(t, np.int64))
    # Both orientations of every triangle: meshes in the wild are not consistently oriented,
    # and the rasteriser culls faces turned away from the camera.
    mesh = TriMesh.concat([one_side, TriMesh(one_side.tris[:, ::-1].copy(), one_side.color,
                                             one_side.tex_amp, one_side.tex_freq,
                                             one_side.instance, one_side.semantic)])
    up_axis = dict(y=np.array([0.0, 1.0, 0.0]), z=np.array([0.0, 0.0, 1.0]))[up]
    # Azimuth turns round `up`, in the plane spanned by (a, b).
    a, b = (np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])) if up == 'y' else \
        (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    k = object_intrinsics(image_size, distance)
    views = []
    for v in range(num_views):
        az = 2 * np.pi * (v + rng.uniform(-0.25, 0.25)) / num_views
        el = np.deg2rad(rng.uniform(*elevation_deg))
        eye = distance * (np.cos(el) * (np.cos(az) * a + np.sin(az) * b) + np.sin(el) * up_axis)
        world2cam = look_at(eye, np.zeros(3), up=tuple(up_axis))
        depth, face = rasterize(mesh, world2cam, k, image_size, image_size)
        rgb = shade_image(mesh, depth, face, np.linalg.inv(world2cam), k,
                          background=(1.0, 1.0, 1.0))
        # The unit-sphere normalisation is folded into the camera: world = the mesh file's.
        views.append(ObjectView(rgb, depth, world2cam @ norm, k))
    return views


# ----------------------------------------------------------------------------- the folder
@dataclass
class _Rendered:
    """What `write_object_views` reads of an object: its views."""

    views: list[ObjectView]


def shape_complete(view_dir: Path, num_views: int) -> bool:
    """True when ``cameras.json`` lists `num_views` views whose image files exist."""
    try:
        meta = json.loads((view_dir / 'cameras.json').read_text())
        views = meta['views']
        return len(views) == num_views and all(
            (view_dir / v['file']).is_file() and (view_dir / v['depth_file']).is_file()
            for v in views)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _claim(out_dir: Path, params: dict, force: bool) -> None:
    """Refuse a non-empty `out_dir` that is not this tool's result with `params`."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        try:
            held = json.loads((out_dir / MANIFEST).read_text()).get('params')
        except (OSError, ValueError, AttributeError):
            held = None
        if held == params:
            return
        if not force:
            what = ('files that are not render_object_views output' if held is None else
                    'views rendered with other settings (' + ', '.join(
                        sorted(k for k in params if params[k] != held.get(k))) + ' differ)')
            raise RenderOutputError(f'{out_dir} is not empty: it holds {what}. Pass --force to '
                                    'empty it and render there, or choose another folder')
        for child in out_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (MANIFEST + '.tmp')
    tmp.write_text(json.dumps(dict(tool='render_object_views', params=params), indent=1))
    os.replace(tmp, out_dir / MANIFEST)


def render_object_views(mesh_dir: str | Path, out_dir: str | Path, num_views: int = 8,
                        image_size: int = 224, up: str = 'y', seed: int = 0,
                        distance: float = 2.5,
                        elevation_deg: tuple[float, float] = (10.0, 40.0),
                        force: bool = False, max_shapes: int | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """Render every mesh under `mesh_dir` into `out_dir` (see the module docstring).

    `max_shapes` stops after that many new shapes (a deliberate interruption). Returns a
    summary: shapes found, rendered now, skipped as complete, seconds.
    """
    mesh_dir, out_dir = Path(mesh_dir), Path(out_dir)
    if not mesh_dir.is_dir():
        raise MeshError(f'mesh folder not found: {mesh_dir}')
    if num_views < 1 or image_size < 8 or up not in ('y', 'z') or not distance > 1:
        raise ValueError('need num_views >= 1, image_size >= 8, up in (y, z), distance > 1')
    meshes = find_meshes(mesh_dir)
    if not meshes:
        raise MeshError(f'no {"/".join(MESH_SUFFIXES)} files under {mesh_dir}')
    params = dict(mesh_dir=str(mesh_dir.resolve()), num_views=num_views,
                  image_size=image_size, up=up, seed=seed, distance=distance,
                  elevation_deg=list(elevation_deg))
    _claim(out_dir, params, force)
    start, rendered, skipped = time.perf_counter(), 0, 0
    for i, (key, path) in enumerate(meshes.items()):
        view_dir = out_dir / key
        if shape_complete(view_dir, num_views):
            skipped += 1
        else:
            if max_shapes is not None and rendered >= max_shapes:
                break
            verts, tris = read_mesh(path)
            # Each shape's cameras depend only on (seed, its key): a resumed run renders the
            # same views as an uninterrupted one.
            rng = np.random.default_rng([seed, *key.encode()])
            try:
                views = render_mesh_views(verts, tris, num_views, image_size, rng, distance,
                                          elevation_deg, up)
            except MeshError as e:
                raise MeshError(f'{path}: {e}') from e
            if view_dir.exists():
                shutil.rmtree(view_dir)  # an interrupted shape: start it again
            # write_object_views writes cameras.json after the images: the completion marker.
            # 'points' names the ShapeNet-55 point file the views pair with.
            write_object_views(view_dir, _Rendered(views), f'shapenet_pc/{key}.npy')
            rendered += 1
        if progress is not None:
            progress(i + 1, len(meshes))
    return dict(out_dir=str(out_dir), shapes=len(meshes), rendered=rendered, skipped=skipped,
                complete=sum(shape_complete(out_dir / k, num_views) for k in meshes),
                seconds=round(time.perf_counter() - start, 2))
