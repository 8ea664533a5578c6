"""ScanNet / S3DIS segmentation datasets that train on every whole scene once per epoch.

mmdet3d's ``ScanNetSegDataset`` and ``S3DISSegDataset`` refuse to train without
``scene_idxs``, the resampling index that its patch-based PointNet++ recipe precomputes
(scenes repeated by point count, since each visit only sees a 1-1.5 m patch). A voxel model
sees the whole scene per visit, so these subclasses default to each scene once
(``scene_idxs=None``); a given ``scene_idxs`` still works as in mmdet3d.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmdet3d.datasets import ScanNetSegDataset
from mmdet3d.datasets.s3dis_dataset import _S3DISSegDataset
from mmdet3d.registry import DATASETS


def _whole_scene_idxs(dataset: ScanNetSegDataset | _S3DISSegDataset, parent_get,
                      scene_idxs: np.ndarray | str | None) -> np.ndarray:
    """Every scene once when ``scene_idxs`` is None, else mmdet3d's behaviour."""
    if scene_idxs is None:
        return np.arange(len(dataset.data_list), dtype=np.int32)
    return parent_get(scene_idxs)


@DATASETS.register_module()
class ScanNetWholeSceneSegDataset(ScanNetSegDataset):
    """``ScanNetSegDataset`` whose training split defaults to every scene once per epoch."""

    def get_scene_idxs(self, scene_idxs: np.ndarray | str | None) -> np.ndarray:
        """Every scene once unless resampled indices are given."""
        return _whole_scene_idxs(self, super().get_scene_idxs, scene_idxs)


class _S3DISWholeRoomArea(_S3DISSegDataset):
    """One S3DIS info file, every room once per epoch by default."""

    def get_scene_idxs(self, scene_idxs: np.ndarray | str | None) -> np.ndarray:
        """Every room once unless resampled indices are given."""
        return _whole_scene_idxs(self, super().get_scene_idxs, scene_idxs)


@DATASETS.register_module()
class S3DISWholeSceneSegDataset(_S3DISWholeRoomArea):
    """``S3DISSegDataset`` (several info files, e.g. one per area) with every room once.

    Args:
        ann_files: one info file or a list of them (concatenated in order).
        scene_idxs: None (every room once), or one index array / file path per info file.
        **kwargs: as ``S3DISSegDataset``.
    """

    def __init__(self, ann_files: str | Sequence[str] = '',
                 scene_idxs: Sequence | str | None = None, **kwargs) -> None:
        files = [ann_files] if isinstance(ann_files, str) else list(ann_files)
        if scene_idxs is None or isinstance(scene_idxs, str):
            per_file = [scene_idxs] * len(files)
        else:
            per_file = list(scene_idxs)
        if len(per_file) != len(files):
            raise ValueError(f'S3DISWholeSceneSegDataset: {len(per_file)} scene_idxs for '
                             f'{len(files)} ann_files')
        super().__init__(ann_file=files[0], scene_idxs=per_file[0], **kwargs)
        for ann_file, idxs in zip(files[1:], per_file[1:]):
            self.data_list += _S3DISWholeRoomArea(ann_file=ann_file, scene_idxs=idxs,
                                                  **kwargs).data_list
        if not self.test_mode:
            self._set_group_flag()
