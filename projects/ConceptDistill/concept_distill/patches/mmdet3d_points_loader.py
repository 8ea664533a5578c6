"""Name the file when mmdet3d's ``LoadPointsFromFile`` meets a point file of the wrong size.

mmdet3d 1.4's ``LoadPointsFromFile._load_points`` reads the raw float32 buffer and its
``transform`` then calls ``points.reshape(-1, load_dim)``; a truncated or foreign ``.bin``
fails there (or in ``np.frombuffer``) with numpy's bare "cannot reshape array of size ..."
naming no file. The downstream configs (VoteNet, 3DETR, MinkUNet) use mmdet3d's loader, so
it is wrapped here: a buffer that is not a whole number of ``load_dim``-value rows, or holds
no point, raises ``PointFileError`` naming the file, its size and the row width expected.
Sound files load exactly as before.
"""
from __future__ import annotations

import functools
import os.path as osp
from typing import Any

import numpy as np
from mmdet3d.datasets.transforms import LoadPointsFromFile

_PATCH_FLAG = '_concept_distill_names_point_file'


class PointFileError(ValueError):
    """A point file whose size is not a whole number of rows of the configured width."""


def _size_note(filename: str) -> str:
    return f'{osp.getsize(filename)} bytes' if osp.isfile(filename) else 'its size'


def _fix(loader: LoadPointsFromFile) -> str:
    return (f'the file is truncated or is not a point file of this dataset, or '
            f'load_dim={loader.load_dim} is wrong for it: re-create it with '
            'tools/create_data.py, or set LoadPointsFromFile(load_dim=...) to its row width')


def install() -> None:
    """Wrap ``LoadPointsFromFile._load_points`` with a size check (idempotent)."""
    original = LoadPointsFromFile._load_points
    if getattr(original, _PATCH_FLAG, False):
        return

    @functools.wraps(original)
    def load_points_checked(self: LoadPointsFromFile, pts_filename: str) -> Any:
        try:
            points = original(self, pts_filename)
        except ValueError as err:  # np.frombuffer: a byte count that is no whole float32
            raise PointFileError(
                f'{pts_filename}: {_size_note(pts_filename)} is not a whole number of float32 '
                f'values ({err}); expected rows of load_dim={self.load_dim} float32 values: '
                f'{_fix(self)}') from None
        size = int(np.asarray(points).size)
        if size == 0:
            raise PointFileError(f'{pts_filename} holds no points ({_size_note(pts_filename)}); '
                                 f'expected rows of load_dim={self.load_dim} float32 values: '
                                 f'{_fix(self)}')
        if size % self.load_dim:
            raise PointFileError(
                f'{pts_filename} holds {size} float32 values ({_size_note(pts_filename)}), '
                f'not a whole number of rows of load_dim={self.load_dim} values '
                f'({size % self.load_dim} left over, {size // self.load_dim} whole rows): '
                f'{_fix(self)}')
        return points

    setattr(load_points_checked, _PATCH_FLAG, True)
    LoadPointsFromFile._load_points = load_points_checked


def installed() -> bool:
    """Whether ``LoadPointsFromFile`` names a point file of the wrong size."""
    return bool(getattr(LoadPointsFromFile._load_points, _PATCH_FLAG, False))
