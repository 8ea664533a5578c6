"""Precomputed frame pairs (`create_data.py pairs`): the same pairs as the online path on the
same frames (indices, pixel coordinates, whole packed samples), resumable preparation, and a
clear error when the preparation does not match the pipeline or the infos."""
from __future__ import annotations

import copy
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from concept_distill.datasets import PairedDataError, visible_points
from concept_distill.datasets.converters.frame_pairing import precompute_frame_pairs
from concept_distill.datasets.frame_pairs import (
    PAIRS_KEY,
    PrecomputedPairsError,
    pairs_path,
    read_frame_pairs,
)

SCANNET_CFG = REPO_ROOT / 'configs/_base_/datasets/scannet-paired.py'
SUN_CFG = REPO_ROOT / 'configs/_base_/datasets/sunrgbd-paired.py'
SYN = dict(num_scenes=2, seed=3, num_frames=3, points_per_scene=20000, image_size=(120, 160),
           val_scenes=1)


@pytest.fixture(scope='module')
def prepared(synthetic_root, tmp_path_factory) -> Path:
    """A synthetic root with every frame's pairs precomputed (shared, read-only)."""
    root = synthetic_root(copy_to=tmp_path_factory.mktemp('pairs') / 'root', **SYN)
    summary = precompute_frame_pairs(str(root))
    assert summary['written'] == summary['frames'] == 6 and not summary['skipped']
    return root


def _dataset(root: Path, precomputed: bool, split: str = 'train', cfg_path: Path = SCANNET_CFG,
             edit=None, **ds_kwargs):
    cfg = Config.fromfile(str(cfg_path))
    ds = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    ds.update(data_root=str(root), **{'skip_bad_frames': False, 'serialize_data': False,
                                      **ds_kwargs})
    for t in ds.pipeline:
        if t['type'] == 'LoadScenePoints':
            t['precomputed_pairs'] = precomputed
        if t['type'] == 'FrustumPointPairing':
            t['min_points'] = 64
    if edit is not None:
        edit(ds.pipeline)
    return DATASETS.build(ds)


def _same_samples(a, b, seed: int) -> int:
    """Assert two datasets give the same packed samples for every index; visible counts."""
    counts = []
    for i in range(len(a)):
        np.random.seed(seed + i)
        sa = a[i]
        np.random.seed(seed + i)
        sb = b[i]
        for key in set(sa['inputs']) | set(sb['inputs']):
            assert (sa['inputs'][key] == sb['inputs'][key]).all(), (i, key)
        ma, mb = sa['data_samples'], sb['data_samples']
        # Pixels are projected in float32 from the same points with the same matrix: equal up
        # to float round-off (nothing is quantised in storage).
        np.testing.assert_allclose(ma.pixel_uv.numpy(), mb.pixel_uv.numpy(), rtol=0, atol=1e-4)
        assert ma.num_visible_points == mb.num_visible_points
        counts.append(ma.num_visible_points)
    return sum(counts)


def test_stored_indices_are_the_online_visible_points(prepared):
    """Index for index: the stored visible set is what FrustumPointPairing computes online
    in the pipeline's own (decoded at reduced scale, resized to 224) frame."""
    ds = _dataset(prepared, False, edit=lambda p: p[3].update(num_points=None))
    steps = ds.pipeline.transforms[:3]  # points, image + depth, resize
    cfg = Config.fromfile(str(SCANNET_CFG)).paired_loading[3]
    for i in range(len(ds)):
        results = ds.get_data_info(i)
        for t in steps:
            results = t(results)
        idx, uv = visible_points(
            results['points'].coord.numpy(), results['lidar2img'], results['img_shape'],
            cfg['depth_range'], results['depth_map'], results['lidar2depth'],
            cfg['occlusion_tol'])
        header, stored = read_frame_pairs(pairs_path(results['img_path']))
        assert len(idx) > 300
        assert np.array_equal(idx, stored)
        assert header['num_visible'] == len(idx)


@pytest.mark.parametrize('mode', ['online_teacher', 'cached_teacher', 'random_crop',
                                  'all_points'])
def test_both_paths_give_the_same_samples(prepared, mode):
    """Same seed, same frame: identical packed points and images, pixels within 1e-4 px,
    through the 3D augmentations (and random crops, which the stored set is filtered by)."""
    def edit(pipeline):
        if mode == 'cached_teacher':
            pipeline[1].update(with_pixels=False)
        if mode == 'random_crop':
            pipeline[2].update(mode='shortest', crop='random')
        if mode == 'all_points':
            pipeline[3].update(num_points=None)

    online, pre = _dataset(prepared, False, edit=edit), _dataset(prepared, True, edit=edit)
    assert _same_samples(online, pre, seed=10) > 1000
    results = pre.pipeline.transforms[0](pre.get_data_info(0))
    assert PAIRS_KEY in results and 'points' not in results  # the scene was not read
    results = pre.pipeline.transforms[1](results)
    assert 'depth_map' not in results  # nor the depth frame


def test_real_sunrgbd_frame(fixtures_root, tmp_path):
    """The real SUN RGB-D frame (its own depth cloud, MATLAB pixel origin, no depth test)."""
    root = Path(shutil.copytree(fixtures_root / 'sunrgbd', tmp_path / 'sun'))
    summary = precompute_frame_pairs(str(root), ['sunrgbd_000017_infos.pkl'],
                                     data_prefix=dict(pts='', img=''), with_depth=False)
    assert summary['written'] == 1
    kw = dict(ann_file='sunrgbd_000017_infos.pkl', data_prefix=dict(pts='', img=''))
    online = _dataset(root, False, cfg_path=SUN_CFG, **kw)
    pre = _dataset(root, True, cfg_path=SUN_CFG, **kw)
    assert _same_samples(online, pre, seed=0) > 0.99 * 50000
    # 50k points: a 6.25 KB bitmask plus the header.
    assert os.path.getsize(root / '000017.pairs') < 6250 + 1500


def test_mismatches_name_the_file_and_the_parameter(prepared):
    path = pairs_path(str(prepared / 'posed_images/scene0000_00/00000.jpg'))
    cases = [(lambda p: p[3].update(occlusion_tol=0.2), r'occlusion_tol=0\.1 .*0\.2'),
             (lambda p: p[3].update(depth_range=(0.2, 10.0)), 'depth_range'),
             (lambda p: p[1].update(with_depth=False), 'occlusion_test=True'),
             (lambda p: p[0].update(load_dim=3, use_dim=[0, 1, 2]), 'load_dim=6')]
    for edit, match in cases:
        ds = _dataset(prepared, True, edit=edit)
        with pytest.raises(PrecomputedPairsError, match=match) as err:
            ds[0]
        assert path in str(err.value) and 'create_data.py pairs' in str(err.value)


def test_stale_preparation_is_an_error(prepared, tmp_path):
    root = Path(shutil.copytree(prepared, tmp_path / 'root'))
    infos_path = root / 'scannet_infos_train.pkl'
    infos = pickle.loads(infos_path.read_bytes())
    infos['data_list'][0]['frames'][0]['cam2global'][0][3] += 0.05  # the pose moved 5 cm
    infos_path.write_bytes(pickle.dumps(infos))
    with pytest.raises(PrecomputedPairsError, match=r'00000\.pairs.*another lidar2img'):
        _dataset(root, True)[0]
    pts = root / 'points' / 'scene0000_00.bin'
    pts.write_bytes(pts.read_bytes() + np.zeros(6, np.float32).tobytes())  # one more point
    with pytest.raises(PrecomputedPairsError, match=r'num_points=20000 .* num_points=20001'):
        _dataset(root, True)[1]
    # Re-running the preparation fixes both (only the stale frames are redone).
    summary = precompute_frame_pairs(str(root))
    assert summary['written'] == 3 and summary['up_to_date'] == 3
    assert _dataset(root, True)[0]['data_samples'].num_visible_points > 300


def test_missing_file_falls_back_online_and_corrupt_file_is_skipped(prepared, tmp_path):
    root = Path(shutil.copytree(prepared, tmp_path / 'root'))
    os.remove(pairs_path(str(root / 'posed_images/scene0000_00/00001.jpg')))
    _same_samples(_dataset(root, False), _dataset(root, True), seed=3)
    Path(pairs_path(str(root / 'posed_images/scene0000_00/00002.jpg'))).write_bytes(b'CDPAIRS1')
    with pytest.raises(PairedDataError, match=r'corrupt pairs file .*00002\.pairs'):
        _dataset(root, True)[2]
    ds = _dataset(root, True, skip_bad_frames=True, test_mode=True)
    assert ds[2] is None  # test mode: left out of the gallery, not a duplicate of frame 0
    assert ds.skip_counts == {'corrupt_pairs': 1, 'dropped_from_gallery': 1}


def test_preparation_resumes_and_redoes_changed_parameters(synthetic_root, tmp_path,
                                                           import_tool):
    root = synthetic_root(copy_to=tmp_path / 'root', **SYN)
    calls = []
    first = precompute_frame_pairs(str(root), max_scenes=1,
                                   progress=lambda d, t: calls.append((d, t)))
    assert (first['written'], first['pending']) == (3, 3)  # interrupted after one scene
    calls.clear()
    create_data = import_tool('create_data')
    summary = create_data.main(['pairs', '--root-path', str(root), '--workers', '1'])
    assert (summary['up_to_date'], summary['written'], summary['frames']) == (3, 3, 6)
    # A 20k-point scene: a 2.5 KB bitmask and a header of about 1 KB.
    assert 2500 < summary['mean_bytes_per_frame'] < 4000
    summary = create_data.main(['pairs', '--root-path', str(root)])
    assert (summary['up_to_date'], summary['written']) == (6, 0)
    summary = create_data.main(['pairs', '--root-path', str(root), '--occlusion-tol', '0.2'])
    assert summary['written'] == 6 and summary['params']['occlusion_tol'] == 0.2
    ds = _dataset(root, True, edit=lambda p: p[3].update(occlusion_tol=0.2))
    assert ds[0]['data_samples'].num_visible_points > 300
    assert not list(root.rglob('*.tmp*'))  # atomic writes leave nothing behind
