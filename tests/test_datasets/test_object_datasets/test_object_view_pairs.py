"""ShapeNet-55 (points, rendered view) pairs: Point-BERT's layout written here from its
description (``shapenet_pc/<synset>-<model>.npy`` (8192, 3) float32, ``ShapeNet-55/{train,
test}.txt`` listing ``<synset>-<model>.npy``), the views layout of docs/object_track.md, and
the synthetic generator's output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS
from mmdet3d.structures.points import DepthPoints
from PIL import Image

from concept_distill.datasets.frustum_pairing import PairedDataError, pixel_index, project
from concept_distill.datasets.object_datasets import (
    NormalizeObjectPoints,
    ObjectDataError,
    ObjectScaleTranslate,
)
from concept_distill.datasets.transforms.frustum_point_pairing import append_uv

SHAPES = ('02691156-1a04e3eab45ca15dd86060f189eb133', '03001627-1a6f615e8b1b5ae4dbbc9440457e303e')
SIZE = 16
K = [[10.0, 0.0, (SIZE - 1) / 2], [0.0, 10.0, (SIZE - 1) / 2], [0.0, 0.0, 1.0]]


def _world2cam(dz: float) -> list:
    """A camera at (0, 0, -dz) looking along +z (x right, y down): world2cam shifts z by dz."""
    m = np.eye(4)
    m[2, 3] = dz
    return m.tolist()


def write_pointbert_root(root: Path, num_views: int = 2, num_points: int = 64) -> Path:
    """Two shapes, both in train; the second in test too; `num_views` 16x16 views each."""
    rng = np.random.default_rng(0)
    (root / 'shapenet_pc').mkdir(parents=True)
    (root / 'ShapeNet-55').mkdir()
    for key in SHAPES:
        pts = rng.uniform(-0.5, 0.5, (num_points, 3)).astype(np.float32)
        np.save(root / 'shapenet_pc' / f'{key}.npy', pts)
        views = root / 'shapenet_views' / key
        views.mkdir(parents=True)
        entries = []
        for k in range(num_views):
            Image.fromarray(np.full((SIZE, SIZE, 3), 40 * k, np.uint8)).save(views / f'{k:02d}.png')
            entries.append(dict(file=f'{k:02d}.png', world2cam=_world2cam(3.0 + k), cam2img=K))
        (views / 'cameras.json').write_text(json.dumps(dict(views=entries)))
    (root / 'ShapeNet-55' / 'train.txt').write_text(''.join(f'{k}.npy\n' for k in SHAPES))
    (root / 'ShapeNet-55' / 'test.txt').write_text(f'{SHAPES[1]}.npy\n')
    return root


def _pipeline(with_pixels: bool = True) -> list:
    return [dict(type='LoadObjectPoints'),
            dict(type='LoadPairedImage', with_pixels=with_pixels, with_depth=False),
            dict(type='FrustumPointPairing', num_points=None, depth_range=(0.1, 100.0),
                 min_points=1),
            dict(type='PackPairedInputs')]


def _build(root: Path, **kw):
    return DATASETS.build(dict(type='ShapeNet55ViewPairDataset', data_root=str(root), **kw))


@pytest.fixture
def pb_root(tmp_path) -> Path:
    return write_pointbert_root(tmp_path / 'ShapeNet55-34')


def test_items_carry_the_scene_pair_keys_and_the_view_camera(pb_root):
    ds = _build(pb_root, split='train', view_sampling='all')
    assert len(ds) == 4
    assert ds.frame_ids() == [f'{k}/{v:02d}' for k in SHAPES for v in range(2)]
    info = ds.get_data_info(1)
    assert info['frame_id'] == f'{SHAPES[0]}/01' and info['scene_id'] == SHAPES[0]
    assert info['img_path'] == str(pb_root / 'shapenet_views' / SHAPES[0] / '01.png')
    assert info['lidar_path'] == str(pb_root / 'shapenet_pc' / f'{SHAPES[0]}.npy')
    expected = np.eye(4)
    expected[:3, :3] = K
    np.testing.assert_allclose(info['lidar2img'], expected @ np.array(_world2cam(4.0)))


def test_pixel_uv_is_the_projection_of_each_point(pb_root):
    ds = _build(pb_root, split='train', view_sampling='all', pipeline=_pipeline())
    out = ds[1]  # shape 0, view 01 (camera 4 units away)
    pts = np.load(pb_root / 'shapenet_pc' / f'{SHAPES[0]}.npy')
    z = pts[:, 2] + 4.0
    u = 10.0 * pts[:, 0] / z + (SIZE - 1) / 2
    v = 10.0 * pts[:, 1] / z + (SIZE - 1) / 2
    inside = (u >= -0.5) & (u < SIZE - 0.5) & (v >= -0.5) & (v < SIZE - 0.5)
    assert inside.sum() > 40  # most points are in the 16x16 view
    got_pts = out['inputs']['points'].numpy()
    np.testing.assert_allclose(got_pts, pts[inside], atol=1e-6)
    np.testing.assert_allclose(out['data_samples'].pixel_uv.numpy(),
                               np.stack([u, v], 1)[inside], atol=1e-4)
    assert out['inputs']['img'].shape == (3, SIZE, SIZE)
    assert int(out['inputs']['img'][0, 0, 0]) == 40  # view 01's image
    assert out['data_samples'].frame_id == f'{SHAPES[0]}/01'


def test_view_sampling_random_in_training_and_fixed_in_test_mode(pb_root):
    train = _build(pb_root, split='train')  # default: random
    assert len(train) == 2
    np.random.seed(0)
    drawn = {train.get_data_info(0)['frame_id'] for _ in range(30)}
    assert drawn == {f'{SHAPES[0]}/00', f'{SHAPES[0]}/01'}
    # Teacher extraction enumerates every view a training run may draw.
    assert train.num_frames == 4
    assert train.frame_ids() == [f'{k}/{v:02d}' for k in SHAPES for v in range(2)]
    fixed = _build(pb_root, split='train', view_sampling='random', test_mode=True)
    assert len({fixed.get_data_info(0)['frame_id'] for _ in range(10)}) == 1
    assert len(_build(pb_root, split='train', test_mode=True)) == 4  # default in test: all
    assert len(_build(pb_root, split='test', test_mode=True)) == 2
    one = _build(pb_root, split='train', view_sampling='all', max_views=1)
    assert one.frame_ids() == [f'{k}/00' for k in SHAPES]


def test_missing_and_malformed_layout_files_are_named(pb_root):
    views = pb_root / 'shapenet_views' / SHAPES[1]
    cams = json.loads((views / 'cameras.json').read_text())
    del cams['views'][1]['cam2img']
    (views / 'cameras.json').write_text(json.dumps(cams))
    with pytest.raises(ObjectDataError, match=r"cameras\.json: views\[1\].*cam2img"):
        _build(pb_root, split='test')
    (views / 'cameras.json').write_text('{"views": [')
    with pytest.raises(ObjectDataError, match='cameras.json: not readable as JSON'):
        _build(pb_root, split='test')
    (views / 'cameras.json').unlink()
    with pytest.raises(ObjectDataError, match=f'{SHAPES[1]}.cameras.json'):
        _build(pb_root, split='test')
    (pb_root / 'ShapeNet-55' / 'train.txt').write_text('not_a_shape.txt\n')
    with pytest.raises(ObjectDataError, match=r'train\.txt:1: expected'):
        _build(pb_root, split='train')
    (pb_root / 'ShapeNet-55' / 'train.txt').unlink()
    with pytest.raises(ObjectDataError, match='ShapeNet-55 split list not found.*train.txt'):
        _build(pb_root, split='train')


def test_a_missing_views_folder_is_named(pb_root):
    import shutil

    shutil.rmtree(pb_root / 'shapenet_views' / SHAPES[0])
    with pytest.raises(ObjectDataError, match=f'no rendered views for shape {SHAPES[0]}'):
        _build(pb_root, split='train')


@pytest.mark.parametrize('damage', ['missing', 'two_columns', 'not_npy', 'nan'])
def test_bad_point_files_are_named(pb_root, damage):
    path = pb_root / 'shapenet_pc' / f'{SHAPES[0]}.npy'
    if damage == 'missing':
        path.unlink()
    elif damage == 'two_columns':
        np.save(path, np.zeros((10, 2), np.float32))
    elif damage == 'not_npy':
        path.write_bytes(b'\x00' * 64)
    else:
        np.save(path, np.full((10, 3), np.nan, np.float32))
    ds = _build(pb_root, split='train', view_sampling='all', pipeline=_pipeline(),
                skip_bad_frames=False)
    with pytest.raises(PairedDataError, match=str(path)):
        ds[0]
    # Skipping (the default) replaces the shape by another and counts it.
    ds = _build(pb_root, split='train', view_sampling='all', pipeline=_pipeline(),
                test_mode=True)
    assert ds[0]['data_samples'].scene_id == SHAPES[1]
    assert sum(ds.skip_counts.values()) == 2  # both views of the damaged shape


def test_a_missing_view_image_is_named(pb_root):
    (pb_root / 'shapenet_views' / SHAPES[0] / '00.png').unlink()
    ds = _build(pb_root, split='train', view_sampling='all', pipeline=_pipeline(),
                skip_bad_frames=False)
    with pytest.raises(PairedDataError, match='00.png'):
        ds[0]


def test_object_transforms_move_xyz_and_keep_pixel_uv():
    xyz = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 5.0, 2.0]])
    uv = np.array([[4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])
    pts = append_uv(DepthPoints(xyz, points_dim=3), uv)
    out = NormalizeObjectPoints()(dict(points=pts))['points']
    assert isinstance(out, DepthPoints) and out.attribute_dims == pts.attribute_dims
    np.testing.assert_allclose(out.tensor[:, 3:].numpy(), uv)
    centred = xyz - xyz.mean(0)
    np.testing.assert_allclose(out.tensor[:, :3], centred / centred.norm(dim=1).max(),
                               atol=1e-6)
    np.random.seed(1)
    moved = ObjectScaleTranslate(scale=(0.5, 2.0), translate=0.3)(dict(points=out))['points']
    np.testing.assert_allclose(moved.tensor[:, 3:].numpy(), uv)  # not treated as normals
    assert not np.allclose(moved.tensor[:, :3], out.tensor[:, :3])


# ------------------------------------------------------------------ synthetic generator output
@pytest.fixture(scope='module')
def synthetic_views(synthetic_objects_root) -> Path:
    root = synthetic_objects_root(num_per_class=2, test_per_class=1, classes=('chair', 'sofa'),
                                  num_points=3000, num_views=3, image_size=64,
                                  layouts=('shapenet55',))
    return root / 'ShapeNet55'


def test_synthetic_views_pair_points_with_the_object_s_pixels(synthetic_views):
    pipeline = [dict(type='LoadObjectPoints'),
                dict(type='LoadPairedImage', with_pixels=True, with_depth=True),
                dict(type='FrustumPointPairing', num_points=None, depth_range=(0.1, 10.0),
                     min_points=1, keep_missing_depth=True, occlusion_tol=10.0),
                dict(type='PackPairedInputs')]
    ds = _build(synthetic_views, split='train', view_sampling='all', pipeline=pipeline)
    assert len(ds) == 2 * 3  # one train shape per class (the other is test), three views
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        out = ds[i]
        assert out['inputs']['points'].shape == (8192, 3)  # the whole shape is in view
        depth = np.asarray(Image.open(info['depth_path'])) / 1000.0  # depth_scale
        row, col = pixel_index(out['data_samples'].pixel_uv.numpy(), *depth.shape)
        # Points project onto the rendered silhouette (depth > 0; thin legs lose some at
        # 64 px) and the visible ones at the depth the view holds: measured 0.93-0.99 and
        # 0.17-0.33 with each view's own camera, <= 0.10 agreement with another view's.
        assert (depth[row, col] > 0).mean() > 0.9, info['frame_id']
        _, z = project(out['inputs']['points'].numpy(), info['lidar2img'])
        assert (np.abs(depth[row, col] - z) < 0.02).mean() > 0.15, info['frame_id']
    # The occlusion test with the view's depth file keeps the visible surface only.
    pipeline[2].update(keep_missing_depth=False, occlusion_tol=0.02)
    ds = _build(synthetic_views, split='train', view_sampling='all', pipeline=pipeline)
    visible = ds[0]['inputs']['points'].shape[0] / 8192
    assert 0.15 < visible < 0.6
