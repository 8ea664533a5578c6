"""mmdet3d's LoadPointsFromFile, as our downstream VoteNet config builds it, names a point
file of the wrong size (issue 18.7) and loads sound files exactly as before."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from mmdet3d.datasets.transforms import LoadPointsFromFile
from mmdet3d.registry import TRANSFORMS

from concept_distill.engine.cli import load_config
from concept_distill.patches.mmdet3d_points_loader import PointFileError

VOTENET = REPO_ROOT / 'configs/votenet/votenet_concept-distill_8xb8_scannet-3d.py'


@pytest.fixture(scope='module')
def votenet_loader() -> LoadPointsFromFile:
    """The first step of the VoteNet test pipeline (mmdet3d's loader, load_dim=6)."""
    cfg = load_config(str(VOTENET))
    step = cfg.test_dataloader.dataset.pipeline[0]
    assert step['type'] == 'LoadPointsFromFile' and step['load_dim'] == 6
    loader = TRANSFORMS.build(step)
    assert type(loader) is LoadPointsFromFile  # mmdet3d's own class, not one of ours
    return loader


def _bin(path: Path, rows: int = 100) -> Path:
    """ScanNet points as mmdet3d stores them: float32 rows of x, y, z, r, g, b."""
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-3, 3, (rows, 3)), rng.uniform(0, 255, (rows, 3))], 1)
    pts.astype(np.float32).tofile(path)
    return path


def _results(path: Path) -> dict:
    return dict(lidar_points=dict(lidar_path=str(path)))


def test_sound_file_loads_as_before(votenet_loader, tmp_path) -> None:
    path = _bin(tmp_path / 'scene0000_00.bin')
    points = votenet_loader(_results(path))['points'].tensor.numpy()
    expected = np.fromfile(path, np.float32).reshape(-1, 6)[:, :3]
    assert points.shape[0] == 100
    np.testing.assert_array_equal(points[:, :3], expected)


@pytest.mark.parametrize('cut', [8, 3])  # whole float32 values / a value cut in half
def test_truncated_bin_names_the_file(votenet_loader, tmp_path, cut: int) -> None:
    path = _bin(tmp_path / 'scene0000_00.bin')
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(PointFileError) as err:
        votenet_loader(_results(path))
    message = str(err.value)
    assert str(path) in message and 'load_dim=6' in message, message
    assert f'{100 * 24 - cut} bytes' in message and 'tools/create_data.py' in message, message


def test_empty_bin_names_the_file(votenet_loader, tmp_path) -> None:
    path = tmp_path / 'scene0000_00.bin'
    path.write_bytes(b'')
    with pytest.raises(PointFileError, match=rf'{path} holds no points \(0 bytes\)'):
        votenet_loader(_results(path))
