"""ScanNet .sens reader/writer: round trip, frame stride, truncated and foreign files."""
from __future__ import annotations

import numpy as np
import pytest

from concept_distill.datasets.converters.scannet_sens import (
    SensFormatError,
    SensHeader,
    encode_frame,
    iter_sens_frames,
    write_sens,
)


def _stream(tmp_path, n: int = 5, bad: tuple[int, ...] = ()):
    rng = np.random.default_rng(0)
    k = np.diag([100.0, 101.0, 1.0, 1.0])
    k[:2, 2] = (31.5, 23.5)
    kd = k.copy()
    kd[:2] /= 2
    frames, arrays = [], []
    for i in range(n):
        yy, xx = np.mgrid[0:48, 0:64]
        rgb = np.stack([xx * 3, yy * 4, np.full_like(xx, 40 * i)], -1).astype(np.uint8)
        depth = rng.integers(0, 5000, (24, 32)).astype(np.uint16)
        pose = np.eye(4)
        pose[:3, 3] = (i, 2 * i, 1.5)
        if i in bad:
            pose[:] = -np.inf
        frames.append(encode_frame(rgb, depth, pose, i))
        arrays.append((rgb, depth, pose))
    header = SensHeader(color_intrinsic=k, depth_intrinsic=kd, color_size=(48, 64),
                        depth_size=(24, 32), depth_shift=1000.0)
    path = tmp_path / 'scene.sens'
    write_sens(path, header, frames)
    return path, arrays


def test_round_trip_with_stride(tmp_path):
    path, arrays = _stream(tmp_path, 5, bad=(3,))
    header, frames = iter_sens_frames(path, frame_stride=2)
    assert header.num_frames == 5 and header.color_size == (48, 64)
    assert header.depth_size == (24, 32) and header.depth_shift == 1000.0
    assert header.color_compression == 'jpeg' and header.depth_compression == 'zlib_ushort'
    np.testing.assert_allclose(header.depth_intrinsic[0, 0], 50.0)
    frames = list(frames)
    assert [f.index for f in frames] == [0, 2, 4]
    for fr in frames:
        rgb, depth, pose = arrays[fr.index]
        np.testing.assert_array_equal(fr.depth(header), depth)  # lossless
        np.testing.assert_allclose(fr.camera_to_world, pose)
        assert np.abs(fr.color(header).astype(int) - rgb).mean() < 3  # JPEG, smooth image
    _, all_frames = iter_sens_frames(path)
    poses = [f.camera_to_world for f in all_frames]
    assert not np.isfinite(poses[3]).all() and np.isfinite(poses[2]).all()


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    path, _ = _stream(tmp_path, 3)
    data = path.read_bytes()
    cut = tmp_path / 'cut.sens'
    cut.write_bytes(data[:len(data) - 100])
    _, frames = iter_sens_frames(cut)
    with pytest.raises(SensFormatError, match='cut.sens.*truncated'):
        list(frames)
    other = tmp_path / 'other.sens'
    other.write_bytes(b'\x03\x00\x00\x00' + data[4:])
    with pytest.raises(SensFormatError, match='other.sens.*version 3'):
        iter_sens_frames(other)
