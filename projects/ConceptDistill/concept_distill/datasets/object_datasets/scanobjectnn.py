"""ScanObjectNN reader: the h5 files of its ``h5_files`` folder, by variant.

Each file holds ``data`` (S, 2048, 3) float32, ``label`` (S,) and ``mask`` (S, 2048), where
mask == -1 marks background points. Variants by file name (``data_root`` = ``h5_files``):
OBJ_BG ``main_split/{training,test}_objectdataset.h5``, OBJ_ONLY
``main_split_nobg/{training,test}_objectdataset.h5``, PB_T50_RS
``main_split/{training,test}_objectdataset_augmentedrot_scale75.h5``.
"""
from __future__ import annotations

import os.path as osp

import numpy as np
from mmdet3d.registry import DATASETS

from concept_distill.datasets.object_datasets.base import (
    ObjectDataError,
    ObjectPointDataset,
    read_h5_arrays,
)

SCANOBJECTNN_CLASSES = ('bag', 'bin', 'box', 'cabinet', 'chair', 'desk', 'display', 'door',
                        'shelf', 'table', 'bed', 'pillow', 'sink', 'sofa', 'toilet')
SCANOBJECTNN_VARIANTS = {
    'OBJ_BG': ('main_split', 'objectdataset'),
    'OBJ_ONLY': ('main_split_nobg', 'objectdataset'),
    'PB_T50_RS': ('main_split', 'objectdataset_augmentedrot_scale75'),
}


def scanobjectnn_file(variant: str, split: str) -> str:
    """Path of a variant's split file relative to ``h5_files``."""
    if variant not in SCANOBJECTNN_VARIANTS:
        raise ValueError(f'unknown ScanObjectNN variant {variant!r}; known: '
                         f'{sorted(SCANOBJECTNN_VARIANTS)}')
    if split not in ('train', 'test'):
        raise ValueError(f"ScanObjectNN split must be 'train' or 'test', got {split!r}")
    folder, stem = SCANOBJECTNN_VARIANTS[variant]
    return osp.join(folder, f'{"training" if split == "train" else "test"}_{stem}.h5')


@DATASETS.register_module()
class ScanObjectNNDataset(ObjectPointDataset):
    """ScanObjectNN (one variant, one split, read into memory); items: `points` (2048, 3),
    `gt_label`, `object_mask` (2048,) bool (False = background)."""

    METAINFO = dict(classes=SCANOBJECTNN_CLASSES, dataset='scanobjectnn')

    def __init__(self, data_root: str, variant: str = 'PB_T50_RS', split: str = 'train',
                 **kwargs) -> None:
        self.variant = variant
        self.file = scanobjectnn_file(variant, split)
        super().__init__(data_root=data_root, split=split, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Read the variant's h5 file; one entry per object."""
        path = osp.join(self.data_root, self.file)
        arrays = read_h5_arrays(path, ('data', 'label', 'mask'), f'ScanObjectNN {self.variant} '
                                f'{self.split} file')
        data, mask = arrays['data'], arrays['mask']
        label = np.asarray(arrays['label']).reshape(-1)
        if data.ndim != 3 or data.shape[2] < 3 or len(label) != len(data) \
                or mask.shape != data.shape[:2]:
            raise ObjectDataError(f'{path}: expected data (S, P, 3), label (S,) and mask (S, P),'
                                  f' got {data.shape}, {arrays["label"].shape}, {mask.shape}',
                                  path)
        self._points = data[:, :, :3].astype(np.float32)
        self._mask = mask != -1
        return [dict(shape_id=f'{self.variant}:{self.split}:{i}',
                     gt_label=self._check_label(int(lab), path), row=i)
                for i, lab in enumerate(label)]

    def load_points(self, info: dict) -> dict:
        """The object's points and its object/background mask."""
        return dict(points=self._points[info['row']], object_mask=self._mask[info['row']])
