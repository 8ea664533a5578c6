"""What the object readers share: the error type, point-file parsing and the dataset base."""
from __future__ import annotations

import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset


class ObjectDataError(RuntimeError):
    """An object dataset file is missing, unreadable or not in its format; names the file."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def require_file(path: str, what: str) -> str:
    """`path` if it is a file, else an ObjectDataError naming it and what it should hold."""
    if not osp.isfile(path):
        raise ObjectDataError(f'{what} not found: {path}', path)
    return path


def read_lines(path: str, what: str) -> list[str]:
    """Non-empty stripped lines of a text file (error naming the file when missing)."""
    with open(require_file(path, what)) as f:
        return [line.strip() for line in f if line.strip()]


def read_point_rows(path: str, num_cols: int, what: str = 'point file') -> np.ndarray:
    """(N, num_cols) float32 from a text file of rows separated by commas and/or whitespace."""
    require_file(path, what)
    with open(path) as f:
        text = f.read()
    try:
        values = np.array(text.replace(',', ' ').split(), dtype=np.float32)
    except ValueError as e:
        raise ObjectDataError(f'{path}: not a table of numbers ({e})', path) from e
    if values.size == 0 or values.size % num_cols:
        raise ObjectDataError(f'{path}: expected rows of {num_cols} values, got {values.size} '
                              f'values', path)
    rows = values.reshape(-1, num_cols)
    if not np.isfinite(rows).all():
        raise ObjectDataError(f'{path}: holds non-finite values', path)
    return rows


def read_h5_arrays(path: str, keys: tuple[str, ...], what: str,
                   optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays `keys` (and those of `optional` that exist) of an h5 file, fully read."""
    import h5py

    require_file(path, what)
    try:
        with h5py.File(path, 'r') as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise ObjectDataError(f'{path}: {what} lacks datasets {missing} (has '
                                      f'{sorted(f.keys())})', path)
            return {k: np.asarray(f[k][()]) for k in (*keys, *optional) if k in f}
    except OSError as e:
        raise ObjectDataError(f'{path}: cannot read {what} as HDF5 ({e})', path) from e


class ObjectPointDataset(BaseDataset):
    """Base of the object readers: items are dicts whose `points` are loaded on access.

    Subclasses fill `data_list` (one dict per object) in `load_data_list` and override
    `load_points(info)`, which returns the per-object arrays (`points` (N, 3 or 6) float32,
    plus per-point labels). In-memory layouts (h5) keep their arrays on the dataset, not in
    `data_list`, so mmengine's serialisation of the list stays small.
    """

    METAINFO: dict = dict(classes=())

    def __init__(self, data_root: str = '', split: str = 'train', use_normals: bool = False,
                 cache_points: bool = False, **kwargs) -> None:
        self.split = split
        self.use_normals = use_normals
        self.cache_points = cache_points
        self._cache: dict[int, dict] = {}
        kwargs.setdefault('serialize_data', False)
        super().__init__(data_root=data_root, data_prefix=dict(), **kwargs)

    def load_points(self, info: dict) -> dict:
        """The object's arrays (`points`, and per-point labels where the format has them)."""
        raise NotImplementedError

    def get_data_info(self, idx: int) -> dict:
        """The idx-th object's info with its arrays loaded."""
        info = super().get_data_info(idx)
        key = info['sample_idx']
        arrays = self._cache.get(key)
        if arrays is None:
            arrays = self.load_points(info)
            if self.cache_points:
                self._cache[key] = arrays
        info.update({k: v.copy() if isinstance(v, np.ndarray) else v for k, v in arrays.items()})
        return info

    def labels(self) -> np.ndarray:
        """Class label of every object (for few-shot sampling and class balance)."""
        return np.array([self.data_list[i]['gt_label'] for i in range(len(self.data_list))],
                        dtype=np.int64)

    def _check_label(self, label: int, path: str) -> int:
        classes = self.metainfo.get('classes') or ()
        if not 0 <= label < len(classes):
            raise ObjectDataError(f'{path}: label {label} outside the {len(classes)} classes '
                                  f'of the metainfo', path)
        return label
