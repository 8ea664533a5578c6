"""Rendering mesh views into the object-pairs layout (tools/render_object_views.py): the OBJ
and OFF readers on files written here from the formats' descriptions, the cameras (in the
mesh file's frame), resuming, and refusing folders that are not the tool's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mmdet3d.registry import DATASETS
from PIL import Image

from concept_distill.datasets.converters.object_view_render import (
    MANIFEST,
    MeshError,
    RenderOutputError,
    read_mesh,
    render_object_views,
    shape_key,
)
from concept_distill.datasets.frustum_pairing import pixel_index, project
from concept_distill.datasets.object_datasets import read_cameras

# A 10-unit cube centred at (5, 0, 0) (far from the unit sphere, so a camera that ignored the
# mesh's frame would miss it). OBJ: `v x y z`, `f` with 1-based indices in the forms v, v/vt,
# v//vn and v/vt/vn, negative indices counting back from the latest vertex; quads allowed.
CUBE_OBJ = """# cube
mtllib cube.mtl
o cube
v 0 -5 -5
v 10 -5 -5
v 10 5 -5
v 0 5 -5
v 0 -5 5
v 10 -5 5
v 10 5 5
v 0 5 5
vt 0 0
vn 0 0 1
usemtl grey
f 1 4 3 2
f 5/1 6/1 7/1 8/1
f 1//1 2//1 6//1 5//1
f 4/1/1 8/1/1 7/1/1 3/1/1
f -8 -4 -1 -5
f 2 3 7 6
"""
# OFF: "OFF", then "V F E", V vertex rows, F rows "n i0 .. i(n-1)" (0-based). ModelNet's
# files glue the counts to the header; a tetrahedron written that way.
TETRA_OFF = """OFF4 4 0
0 0 0
1 0 0
0 1 0
0 0 1
3 0 2 1
3 0 1 3
3 0 3 2
3 1 2 3
"""


def _cube_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    """Points on the cube's faces (the mesh file's frame)."""
    pts = rng.uniform(-5, 5, (n, 3))
    axis = rng.integers(0, 3, n)
    pts[np.arange(n), axis] = rng.choice([-5.0, 5.0], n)
    return pts + np.array([5.0, 0.0, 0.0])


def _cube_normals(pts: np.ndarray) -> np.ndarray:
    """Outward normal of the cube face each surface point lies on."""
    local = pts - np.array([5.0, 0.0, 0.0])
    axis = np.abs(local).argmax(1)
    n = np.zeros_like(local)
    n[np.arange(len(pts)), axis] = np.sign(local[np.arange(len(pts)), axis])
    return n


@pytest.fixture
def meshes(tmp_path) -> Path:
    root = tmp_path / 'meshes'
    obj = root / '02691156' / 'cube0001' / 'models' / 'model_normalized.obj'
    obj.parent.mkdir(parents=True)
    obj.write_text(CUBE_OBJ)
    off = root / '03001627' / 'tetra0001' / 'model.off'
    off.parent.mkdir(parents=True)
    off.write_text(TETRA_OFF)
    return root


def test_obj_and_off_readers(meshes):
    v, t = read_mesh(meshes / '02691156/cube0001/models/model_normalized.obj')
    assert v.shape == (8, 3) and t.shape == (12, 3)  # 6 quads fanned into 12 triangles
    assert t.min() == 0 and t.max() == 7
    # `f -8 -4 -1 -5` after 8 vertices is the quad 1 5 8 4 (0-based 0 4 7 3).
    assert [0, 4, 7] in t.tolist() and [0, 7, 3] in t.tolist()
    v, t = read_mesh(meshes / '03001627/tetra0001/model.off')
    assert v.shape == (4, 3) and t.tolist()[0] == [0, 2, 1]


@pytest.mark.parametrize('name,text,match', [
    ('bad.obj', 'v 0 0 0\nv 1 0 0\nf 1 2 3\n', r'bad\.obj:3: vertex index 3 outside'),
    ('nofaces.obj', 'v 0 0 0\n', 'no faces'),
    ('bad.off', 'OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n', r'bad\.off:6: bad face'),
    ('short.off', 'OFF\n3 1 0\n0 0 0\n', 'header says 3 vertices'),
    ('header.off', 'PLY\n', 'not an OFF file'),
    ('mesh.stl', 'solid', 'unknown mesh format'),
])
def test_bad_meshes_are_named(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MeshError, match=match):
        read_mesh(path)
    with pytest.raises(MeshError, match='not found'):
        read_mesh(tmp_path / 'missing.obj')


def test_keys_follow_shapenet_point_file_names(tmp_path):
    assert shape_key(tmp_path / 'a/b/models/model_normalized.obj', tmp_path) == 'a-b'
    assert shape_key(tmp_path / 'a/b/model.obj', tmp_path) == 'a-b'
    assert shape_key(tmp_path / 'chair/train/chair_0001.off', tmp_path) == \
        'chair-train-chair_0001'


def test_views_see_the_mesh_in_its_own_frame(meshes, tmp_path):
    out = tmp_path / 'views'
    summary = render_object_views(meshes, out, num_views=3, image_size=48)
    assert summary['shapes'] == summary['rendered'] == summary['complete'] == 2
    view_dir = out / '02691156-cube0001'
    assert sorted(p.name for p in view_dir.iterdir()) == [
        '00.png', '00_depth.png', '01.png', '01_depth.png', '02.png', '02_depth.png',
        'cameras.json']
    meta = read_cameras(str(view_dir / 'cameras.json'))
    pts = _cube_surface(4000, np.random.default_rng(0))
    for v in meta['views']:
        proj = v['cam2img'] @ v['world2cam']
        uv, z = project(pts, proj)
        depth = np.asarray(Image.open(view_dir / v['depth_file']), np.float64) / 1000.0
        row, col = pixel_index(uv, *depth.shape)
        reading = depth[row, col]
        # Every surface point projects onto the rendered cube: most on a cube pixel, the rest
        # on the silhouette's edge (a pixel next to one) ...
        assert (reading > 0).mean() > 0.9
        silhouette = np.pad(depth > 0, 1)
        grown = np.zeros_like(silhouette)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                grown |= np.roll(np.roll(silhouette, di, 0), dj, 1)
        assert grown[row + 1, col + 1].all()
        rgb = np.asarray(Image.open(view_dir / v['file']))
        assert ((rgb[row, col] < 250).all(axis=1) == (reading > 0)).all()  # grey, not white
        # ... the visible ones at the depth the depth file holds, the hidden ones behind it.
        # The cube is convex: a point is visible when the camera is outside its face's plane.
        w = v['world2cam']
        eye = np.linalg.solve(w[:3, :3], -w[:3, 3])  # camera centre in the mesh's frame
        visible = ((eye - pts) * _cube_normals(pts)).sum(1) > 0
        assert 0.25 < visible.mean() < 0.6  # 2-3 of the 6 faces
        hit = reading > 0
        # (the depth at a pixel centre differs from a point's within that pixel by up to
        # ~0.03 on faces seen at a slant at 48 px)
        assert np.median(np.abs(reading - z)[visible & hit]) < 0.03
        assert (reading[~visible & hit] < z[~visible & hit] - 0.03).mean() > 0.9
        # Exactly: every pixel with a depth, taken back through the camera, is on the cube.
        i, j = np.nonzero(depth > 0)
        d = depth[i, j]
        back = np.linalg.solve(proj, np.stack([j * d, i * d, d, np.ones_like(d)]))[:3].T
        on_face = np.abs(back - np.array([5.0, 0.0, 0.0])).max(1)
        assert np.abs(on_face - 5.0).max() < 0.02  # uint16 depth: 1/1000 of 8.66 units


def test_rendered_views_pair_with_points_in_the_dataset(meshes, tmp_path):
    root = tmp_path / 'ShapeNet55-34'
    render_object_views(meshes, root / 'shapenet_views', num_views=2, image_size=32)
    (root / 'shapenet_pc').mkdir()
    (root / 'ShapeNet-55').mkdir()
    np.save(root / 'shapenet_pc' / '02691156-cube0001.npy',
            _cube_surface(512, np.random.default_rng(1)).astype(np.float32))
    (root / 'ShapeNet-55' / 'train.txt').write_text('02691156-cube0001.npy\n')
    pipeline = [dict(type='LoadObjectPoints'),
                dict(type='LoadPairedImage', with_pixels=True, with_depth=True),
                dict(type='FrustumPointPairing', num_points=None, depth_range=(0.1, 10.0),
                     occlusion_tol=0.05, min_points=1),
                dict(type='PackPairedInputs')]
    ds = DATASETS.build(dict(type='ShapeNet55ViewPairDataset', data_root=str(root),
                             split='train', view_sampling='all', pipeline=pipeline))
    assert len(ds) == 2
    kept = ds[0]['inputs']['points'].shape[0]
    assert 0.25 * 512 < kept < 0.6 * 512  # the occlusion test keeps the visible half


def test_resumes_and_skips_complete_shapes(meshes, tmp_path):
    out = tmp_path / 'views'
    first = render_object_views(meshes, out, num_views=2, image_size=24, max_shapes=1)
    assert first['rendered'] == 1 and first['complete'] == 1
    done = next(p for p in out.iterdir() if p.is_dir())
    stamp = (done / 'cameras.json').stat().st_mtime_ns
    again = render_object_views(meshes, out, num_views=2, image_size=24)
    assert again['rendered'] == 1 and again['skipped'] == 1 and again['complete'] == 2
    assert (done / 'cameras.json').stat().st_mtime_ns == stamp
    # A shape killed before its cameras.json (the marker) is rendered again, identically.
    cams = (out / '03001627-tetra0001' / 'cameras.json')
    before = json.loads(cams.read_text())
    cams.unlink()
    third = render_object_views(meshes, out, num_views=2, image_size=24)
    assert third['rendered'] == 1 and json.loads(cams.read_text()) == before


def test_refuses_folders_that_are_not_its_own(meshes, tmp_path):
    out = tmp_path / 'views'
    out.mkdir()
    (out / 'notes.txt').write_text('user data')
    with pytest.raises(RenderOutputError, match='not render_object_views output'):
        render_object_views(meshes, out, num_views=2, image_size=24)
    assert (out / 'notes.txt').read_text() == 'user data'
    summary = render_object_views(meshes, out, num_views=2, image_size=24, force=True)
    assert summary['rendered'] == 2 and not (out / 'notes.txt').exists()
    assert (out / MANIFEST).is_file()
    with pytest.raises(RenderOutputError, match='image_size, num_views differ'):
        render_object_views(meshes, out, num_views=3, image_size=32)


def test_tool_prints_the_summary(meshes, tmp_path, import_tool, capsys):
    summary = import_tool('render_object_views').main(
        [str(meshes), str(tmp_path / 'v'), '--num-views', '1', '--image-size', '16'])
    assert summary['rendered'] == 2
    assert json.loads(capsys.readouterr().out)['complete'] == 2
    with pytest.raises(SystemExit, match='mesh folder not found'):
        import_tool('render_object_views').main([str(tmp_path / 'none'), str(tmp_path / 'w')])
