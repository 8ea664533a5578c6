"""Bad input: missing/corrupt files, non-finite poses, empty frustums give a clear message
naming the file and, where skipping is safe, a counted replacement by another frame."""
from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from concept_distill.datasets import PairedDataError


@pytest.fixture(scope='module')
def pristine(synthetic_root) -> Path:
    """A shared root; each test gets its own copy (`root`) to break."""
    return synthetic_root(num_scenes=1, seed=2, num_frames=4, points_per_scene=12000,
                          image_size=(72, 96))


@pytest.fixture()
def root(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / 'root'))


def _dataset(root: Path, **kwargs):
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/scannet-paired.py'))
    ds = copy.deepcopy(cfg.val_dataloader.dataset)
    ds.update(data_root=str(root), ann_file='scannet_infos_val.pkl', max_refetch=3, **kwargs)
    for t in ds.pipeline:
        if t['type'] == 'FrustumPointPairing':
            t.update(num_points=256, min_points=64)
    return DATASETS.build(ds)


def _frame(root: Path, i: int, ext: str) -> Path:
    return root / 'posed_images' / 'scene0000_00' / f'{i:05d}{ext}'


def _edit_infos(root: Path, fn) -> None:
    path = root / 'scannet_infos_val.pkl'
    infos = pickle.loads(path.read_bytes())
    fn(infos['data_list'][0])
    path.write_bytes(pickle.dumps(infos))


def test_missing_image(root):
    _frame(root, 1, '.jpg').unlink()
    ds = _dataset(root)
    assert ds[1] is None  # test mode: left out of the gallery, not a duplicate of frame 2
    assert ds.skip_counts == {'missing_image': 1, 'dropped_from_gallery': 1}
    strict = _dataset(root, skip_bad_frames=False)
    with pytest.raises(PairedDataError, match=r'image file not found: .*00001\.jpg'):
        strict[1]


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_corrupt_jpeg(root, damage):
    path = _frame(root, 2, '.jpg')
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3] if damage == 'truncate' else b'not a jpeg' * 50)
    ds = _dataset(root)
    assert ds[2] is None
    assert ds.skip_counts == {'corrupt_image': 1, 'dropped_from_gallery': 1}
    with pytest.raises(PairedDataError, match=r'corrupt image file .*00002\.jpg'):
        _dataset(root, skip_bad_frames=False)[2]


def test_missing_and_corrupt_point_files(root):
    pts = root / 'points' / 'scene0000_00.bin'
    data = pts.read_bytes()
    pts.unlink()
    with pytest.raises(PairedDataError, match=r'point file not found: .*scene0000_00\.bin'):
        _dataset(root, skip_bad_frames=False)[0]
    ds = _dataset(root, test_mode=False)  # every frame unreadable: a clear stop
    with pytest.raises(PairedDataError, match='no readable frame after 4 tries'):
        ds[0]
    assert ds.skip_counts == {'missing_points': 4}
    pts.write_bytes(data + b'\x00' * 8)  # two stray floats: not a whole number of points
    # (mmdet3d's loader, which LoadScenePoints extends, names the file and the size first.)
    with pytest.raises(PairedDataError, match=r'point file .*scene0000_00\.bin.*not a whole '
                       r'number') as err:
        _dataset(root, skip_bad_frames=False)[0]
    assert err.value.reason == 'corrupt_points'


def test_missing_depth_frame(root):
    _frame(root, 0, '.png').unlink()
    ds = _dataset(root)
    assert ds[0] is None
    assert ds.skip_counts == {'missing_depth': 1, 'dropped_from_gallery': 1}


def test_non_finite_pose_is_dropped_and_counted(root):
    def poison(entry):
        entry['frames'][2]['cam2global'][1][3] = float('nan')

    _edit_infos(root, poison)
    ds = _dataset(root)
    assert len(ds) == 3
    assert ds.skip_counts == {'non_finite_pose': 1}
    assert 'scene0000_00/00002' not in [ds.get_data_info(i)['frame_id'] for i in range(3)]


def test_empty_frustum_is_replaced_and_counted(root):
    def look_away(entry):
        pose = np.asarray(entry['frames'][0]['cam2global'])
        pose[:3, 3] += 50.0 * pose[:3, 2]  # 50 m along the view direction: nothing ahead
        entry['frames'][0]['cam2global'] = pose.tolist()

    _edit_infos(root, look_away)
    ds = _dataset(root)
    assert ds[0] is None
    assert ds.skip_counts == {'too_few_points': 1, 'dropped_from_gallery': 1}
    with pytest.raises(PairedDataError, match=r'frame scene0000_00/00000 sees 0 points'):
        _dataset(root, skip_bad_frames=False)[0]
