"""Synthetic single objects: parts from the builders, surfaces, normals, views, layouts."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from concept_distill.datasets.converters.synthetic.furniture import CLASSES, build_furniture
from concept_distill.datasets.converters.synthetic.mesh import box
from concept_distill.datasets.converters.synthetic.objects import (
    OBJECT_CLASSES,
    PART_NAMES,
    global_part_ids,
    make_object,
    make_objects,
    part_labels_of_faces,
)
from concept_distill.datasets.converters.synthetic.synthetic_objects import (
    create_synthetic_objects,
    split_objects,
)
from concept_distill.datasets.frustum_pairing import color_agreement, visible_points


def test_the_18_furniture_classes_with_their_parts():
    assert tuple(c.name for c in CLASSES) == OBJECT_CLASSES and len(OBJECT_CLASSES) == 18
    assert PART_NAMES['chair'] == ('seat', 'back', 'leg')
    ids = global_part_ids()
    flat = [p for v in ids.values() for p in v]
    assert flat == list(range(len(flat)))  # consecutive, one range per class
    assert ids['cabinet'] == [0, 1] and ids['bed'] == [2, 3, 4, 5]


@pytest.mark.parametrize('name', OBJECT_CLASSES)
def test_every_face_of_every_class_gets_a_part(name):
    cls = next(c for c in CLASSES if c.name == name)
    mesh, _ = build_furniture(cls, np.random.default_rng(3))
    labels = part_labels_of_faces(name, mesh)
    assert labels.min() == 0 and labels.max() == len(PART_NAMES[name]) - 1
    assert set(labels.tolist()) == set(range(len(PART_NAMES[name])))


def test_a_builder_that_changed_is_reported_not_mislabelled():
    cls = next(c for c in CLASSES if c.name == 'chair')
    mesh, _ = build_furniture(cls, np.random.default_rng(0))
    grown = type(mesh).concat([mesh, box((0, 0, 0), (1, 1, 1), (1, 0, 0))])
    with pytest.raises(ValueError, match='chair: the part layout spans 72 triangles but the '
                                         'builder made 84'):
        part_labels_of_faces('chair', grown)


def test_chair_parts_sit_where_a_chair_has_them():
    o = make_object('chair', 1, num_points=4000)
    y = o.xyz[:, 1]  # up
    seat, back, leg = (o.part == k for k in range(3))
    assert y[leg].max() < y[seat].min() + 1e-3  # legs below the seat
    assert np.median(y[back]) > y[seat].max()  # the back rises above it
    assert o.xyz[back, 2].mean() < o.xyz[seat, 2].mean()  # ... at the rear (front is +z)


def test_points_on_unit_sphere_surfaces_with_outward_normals():
    o = make_object('table', 2, num_points=3000)
    assert o.xyz.dtype == np.float32 and o.xyz.shape == (3000, 3)
    assert np.linalg.norm(o.xyz, axis=1).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(np.linalg.norm(o.normals, axis=1), 1.0, atol=1e-5)
    # A table is made of boxes: every normal is an axis direction ...
    assert np.allclose(np.abs(o.normals).max(axis=1), 1.0, atol=1e-5)
    # ... the top's upper face is sampled with +y normals above everything else ...
    top_up = (o.part == 0) & (o.normals[:, 1] > 0.5)
    assert top_up.any() and o.xyz[top_up, 1].min() > o.xyz[~top_up, 1].max() - 1e-4
    # ... and normals point out of the solid: a step against the normal enters one of the
    # table's boxes (12 triangles each), a step along it (almost always) leaves all of them.
    corners = o.mesh.tris.reshape(-1, 12 * 3, 3)
    lo, hi = corners.min(axis=1), corners.max(axis=1)

    def inside(p):
        return ((p[:, None] > lo - 1e-7) & (p[:, None] < hi + 1e-7)).all(axis=2).any(axis=1)

    assert inside(o.xyz - 1e-3 * o.normals).all()
    assert inside(o.xyz + 1e-3 * o.normals).mean() < 0.05


@pytest.mark.parametrize('name', ['sofa', 'bed', 'toilet', 'chair'])
def test_contact_faces_carry_no_points(name):
    """Where parts touch (a cushion on a base), the hidden faces give no points: no two
    labels at one place."""
    o = make_object(name, 1, num_points=3000)
    d = np.linalg.norm(o.xyz[:, None] - o.xyz[None], axis=2)
    np.fill_diagonal(d, np.inf)
    near = d.argmin(axis=1)
    close = d[np.arange(len(d)), near] < 2e-3
    mixed = (o.part != o.part[near]) & close
    assert mixed.mean() < 0.01
    if name == 'sofa':  # the base's top is sampled only where the cushion leaves it open
        base_top = (o.part == 0) & (o.normals[:, 1] > 0.5)
        cushion = o.part == 3
        lo, hi = o.xyz[cushion].min(axis=0), o.xyz[cushion].max(axis=0)
        under = ((o.xyz[base_top][:, [0, 2]] > lo[[0, 2]] + 1e-3)
                 & (o.xyz[base_top][:, [0, 2]] < hi[[0, 2]] - 1e-3)).all(axis=1)
        assert base_top.any() and not under.any()


def test_deterministic_per_seed_class_instance_and_varied_proportions():
    a, b = make_object('sofa', 4, seed=1), make_object('sofa', 4, seed=1)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.part, b.part)
    sizes = np.stack([o.size for o in make_objects(12, classes=('chair',), num_points=64)])
    ratio = sizes[:, 2] / sizes[:, 0]  # height / width
    assert len(np.unique(sizes.round(4), axis=0)) == 12 and ratio.max() / ratio.min() > 1.15


def test_views_see_points_in_their_own_colour():
    o = make_object('bed', 1, num_points=6000, num_views=3, image_size=96)
    assert len(o.views) == 3
    for v in o.views:
        assert v.rgb.shape == (96, 96, 3) and v.rgb.dtype == np.uint8
        assert 0.1 < (v.depth > 0).mean() < 0.9  # the object fills part of the frame
        idx, uv = visible_points(o.xyz, v.projection(), (96, 96), depth_map=v.depth,
                                 occlusion_tol=0.02)
        assert len(idx) > 0.08 * len(o.xyz)
        err = color_agreement(o.rgb[idx], v.rgb, uv)
        shuffled = color_agreement(np.random.default_rng(0).permutation(o.rgb[idx]), v.rgb, uv)
        assert err < 0.03 < shuffled


def test_splits_per_class():
    objs = make_objects(4, classes=('chair', 'table'), num_points=32)
    s = split_objects(objs, test_per_class=1, val_per_class=1)
    assert [o.name for o in s['test']] == ['chair_0004', 'table_0004']
    assert [o.name for o in s['val']] == ['chair_0003', 'table_0003']
    assert len(s['train']) == 4
    overfit = split_objects(objs, test_per_class=0)
    assert [o.name for o in overfit['test']] == [o.name for o in overfit['train']]


def test_create_writes_every_layout(tmp_path):
    summary = create_synthetic_objects(tmp_path, num_per_class=2, test_per_class=1,
                                       classes=('chair', 'toilet'), num_points=3000,
                                       shapenet_part_points=2500, num_views=2, image_size=64)
    assert summary['counts'] == dict(train=2, val=0, test=2)
    mn = tmp_path / 'modelnet40_normal_resampled'
    assert (mn / 'modelnet40_shape_names.txt').read_text() == 'chair\ntoilet\n'
    assert (mn / 'modelnet40_test.txt').read_text() == 'chair_0002\ntoilet_0002\n'
    rows = (mn / 'chair' / 'chair_0001.txt').read_text().splitlines()
    assert len(rows) == 3000 and len(rows[0].split(',')) == 6
    with h5py.File(tmp_path / 'modelnet40_ply_hdf5_2048' / 'ply_data_train0.h5') as f:
        assert f['data'].shape == (2, 2048, 3) and f['label'][()].ravel().tolist() == [0, 1]
    with h5py.File(tmp_path / 'scanobjectnn/main_split/training_objectdataset.h5') as f:
        assert f['data'].shape == (2, 2048, 3) and (f['mask'][()] == -1).mean() > 0.2
    with h5py.File(tmp_path / 'scanobjectnn/main_split_nobg/test_objectdataset.h5') as f:
        assert (f['mask'][()] != -1).all()
    sp = tmp_path / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    assert (sp / 'synsetoffset2category.txt').read_text() == 'chair\t90000002\ntoilet\t90000014\n'
    assert json.loads((sp / 'seg_classes.json').read_text()) == dict(chair=[0, 1, 2],
                                                                       toilet=[3, 4, 5])
    entries = json.loads((sp / 'train_test_split/shuffled_train_file_list.json').read_text())
    assert entries == ['shape_data/90000002/chair_0001', 'shape_data/90000014/toilet_0001']
    part = np.loadtxt(sp / '90000014' / 'toilet_0001.txt')
    assert part.shape == (2500, 7) and set(part[:, 6]) == {3.0, 4.0, 5.0}
    sn = tmp_path / 'ShapeNet55'
    assert (sn / 'ShapeNet-55/train.txt').read_text().splitlines() == [
        '90000002-chair_0001.npy', '90000014-toilet_0001.npy']
    assert np.load(sn / 'shapenet_pc/90000002-chair_0001.npy').shape == (8192, 3)
    cams = json.loads((sn / 'shapenet_views/90000002-chair_0001/cameras.json').read_text())
    assert [v['file'] for v in cams['views']] == ['00.png', '01.png']
    assert np.asarray(cams['views'][0]['world2cam']).shape == (4, 4)


def test_create_object_data_tool(tmp_path, import_tool, capsys):
    tool = import_tool('create_object_data')
    summary = tool.main(['--out-dir', str(tmp_path), '--num-per-class', '2',
                         '--test-per-class', '1', '--val-per-class', '0', '--classes', 'sink',
                         '--layouts', 'modelnet40', 'scanobjectnn', '--num-points', '500'])
    assert json.loads(capsys.readouterr().out) == summary
    assert summary['counts'] == dict(train=1, val=0, test=1)
    assert (tmp_path / 'modelnet40_normal_resampled' / 'sink' / 'sink_0002.txt').is_file()
    assert (tmp_path / 'scanobjectnn' / 'main_split_nobg' / 'test_objectdataset.h5').is_file()
