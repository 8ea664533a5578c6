"""ModelNet40 readers: ``modelnet40_normal_resampled`` (text) and ``modelnet40_ply_hdf5_2048``.

``modelnet40_normal_resampled/``: ``<class>/<class>_XXXX.txt`` (10,000 rows "x,y,z,nx,ny,nz"),
``modelnet40_shape_names.txt`` (one class per line, label = line index) and
``modelnet40_{train,test}.txt`` (shape ids such as ``airplane_0001``; the class is the id
without its last ``_XXXX``). ModelNet10 (``modelnet10_*.txt``) with ``num_classes=10``.

``modelnet40_ply_hdf5_2048/``: ``ply_data_{train,test}{k}.h5`` with ``data`` (S, 2048, 3)
float32 and ``label`` (S, 1) (and ``normal`` in some copies), listed in
``{train,test}_files.txt`` (lines such as ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``:
resolved by file name inside the data root), ``shape_names.txt``.
"""
from __future__ import annotations

import os.path as osp

import numpy as np
from mmdet3d.registry import DATASETS

from concept_distill.datasets.object_datasets.base import (
    ObjectDataError,
    ObjectPointDataset,
    read_h5_arrays,
    read_lines,
    read_point_rows,
)

MODELNET40_CLASSES = (
    'airplane', 'bathtub', 'bed', 'bench', 'bookshelf', 'bottle', 'bowl', 'car', 'chair', 'cone',
    'cup', 'curtain', 'desk', 'door', 'dresser', 'flower_pot', 'glass_box', 'guitar', 'keyboard',
    'lamp', 'laptop', 'mantel', 'monitor', 'night_stand', 'person', 'piano', 'plant', 'radio',
    'range_hood', 'sink', 'sofa', 'stairs', 'stool', 'table', 'tent', 'toilet', 'tv_stand', 'vase',
    'wardrobe', 'xbox')


def _check_split(split: str) -> str:
    if split not in ('train', 'test'):
        raise ValueError(f"ModelNet40 split must be 'train' or 'test', got {split!r}")
    return split


@DATASETS.register_module()
class ModelNet40Dataset(ObjectPointDataset):
    """ModelNet40 (or 10) from ``modelnet40_normal_resampled``; items: `points` (N, 3 or 6 with
    `use_normals`), `gt_label`, `shape_id`. Classes come from the shape-names file."""

    METAINFO = dict(classes=MODELNET40_CLASSES, dataset='modelnet40')

    def __init__(self, data_root: str, split: str = 'train', num_classes: int = 40,
                 **kwargs) -> None:
        self.num_classes = num_classes
        super().__init__(data_root=data_root, split=_check_split(split), **kwargs)

    def load_data_list(self) -> list[dict]:
        """Shape ids of the split, their files and labels."""
        k = self.num_classes
        names = read_lines(osp.join(self.data_root, f'modelnet{k}_shape_names.txt'),
                           f'ModelNet{k} shape-name list')
        self._metainfo['classes'] = tuple(names)
        index = {n: i for i, n in enumerate(names)}
        list_file = osp.join(self.data_root, f'modelnet{k}_{self.split}.txt')
        out = []
        for line_no, shape_id in enumerate(read_lines(list_file, f'ModelNet{k} split list'), 1):
            cls = shape_id.rsplit('_', 1)[0]
            if cls not in index:
                raise ObjectDataError(f'{list_file}:{line_no}: shape {shape_id!r} has class '
                                      f'{cls!r}, not in modelnet{k}_shape_names.txt', list_file)
            out.append(dict(shape_id=shape_id, gt_label=index[cls],
                            points_path=osp.join(self.data_root, cls, f'{shape_id}.txt')))
        return out

    def load_points(self, info: dict) -> dict:
        """Rows of the shape's text file (xyz, and normals with `use_normals`)."""
        rows = read_point_rows(info['points_path'], 6, 'ModelNet40 point file')
        return dict(points=rows if self.use_normals else rows[:, :3].copy())


@DATASETS.register_module()
class ModelNet40H5Dataset(ObjectPointDataset):
    """ModelNet40 from ``modelnet40_ply_hdf5_2048`` (all files read into memory at start)."""

    METAINFO = dict(classes=MODELNET40_CLASSES, dataset='modelnet40_h5')

    def __init__(self, data_root: str, split: str = 'train', **kwargs) -> None:
        super().__init__(data_root=data_root, split=_check_split(split), **kwargs)

    def load_data_list(self) -> list[dict]:
        """Read every listed h5 file; one entry per shape (its row in the stacked arrays)."""
        names_file = osp.join(self.data_root, 'shape_names.txt')
        if osp.isfile(names_file):
            self._metainfo['classes'] = tuple(read_lines(names_file, 'shape-name list'))
        list_file = osp.join(self.data_root, f'{self.split}_files.txt')
        files = [osp.join(self.data_root, osp.basename(line))
                 for line in read_lines(list_file, 'ModelNet40 h5 file list')]
        if not files:
            raise ObjectDataError(f'{list_file}: lists no h5 file', list_file)
        points, out = [], []
        optional = ('normal',) if self.use_normals else ()
        for path in files:
            arrays = read_h5_arrays(path, ('data', 'label'), 'ModelNet40 h5 file', optional)
            data, label = arrays['data'], np.asarray(arrays['label']).reshape(-1)
            if data.ndim != 3 or data.shape[2] != 3 or len(label) != len(data):
                raise ObjectDataError(f'{path}: expected data (S, P, 3) and label (S,) or (S, '
                                      f'1), got {data.shape} and {arrays["label"].shape}', path)
            if self.use_normals:
                if 'normal' not in arrays:
                    raise ObjectDataError(f'{path}: use_normals=True but the file has no '
                                          f"'normal' dataset", path)
                data = np.concatenate([data, arrays['normal'].reshape(data.shape)], axis=2)
            for row, lab in enumerate(label):
                out.append(dict(shape_id=f'{osp.basename(path)}:{row}',
                                gt_label=self._check_label(int(lab), path),
                                row=len(out)))
            points.append(data.astype(np.float32))
        self._points = np.concatenate(points)
        return out

    def load_points(self, info: dict) -> dict:
        """The shape's row of the stacked h5 arrays."""
        return dict(points=self._points[info['row']])
