"""Route ``Det3DDataPreprocessor``'s ``minkunet`` voxelisation of non-CUDA points to
:func:`concept_distill.ops.voxelization.voxelize_minkunet` (mmdet3d's calls ``.cuda()``).

CUDA inputs and every other voxel type still run mmdet3d's own method.
"""
from __future__ import annotations

from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from torch import Tensor

from concept_distill.ops.voxelization import voxelize_minkunet

_PATCH_FLAG = '_concept_distill_device_aware'


def install() -> None:
    """Route ``Det3DDataPreprocessor``'s non-CUDA ``minkunet`` voxelisation to our version.

    Idempotent; other voxel types and CUDA inputs call mmdet3d's original method.
    """
    original = Det3DDataPreprocessor.voxelize
    if getattr(original, _PATCH_FLAG, False):
        return

    def voxelize(self: Det3DDataPreprocessor, points: list[Tensor],
                 data_samples: list) -> dict[str, Tensor]:
        if self.voxel_type == 'minkunet' and len(points) > 0 and not points[0].is_cuda:
            return voxelize_minkunet(
                points,
                data_samples,
                voxel_size=self.voxel_layer.voxel_size,
                max_voxels=self.max_voxels if self.training else None,
                batch_first=self.batch_first)
        return original(self, points, data_samples)

    voxelize.__doc__ = original.__doc__
    voxelize.__wrapped__ = original
    setattr(voxelize, _PATCH_FLAG, True)
    Det3DDataPreprocessor.voxelize = voxelize


def installed() -> bool:
    """Whether :func:`install` is active."""
    return bool(getattr(Det3DDataPreprocessor.voxelize, _PATCH_FLAG, False))
