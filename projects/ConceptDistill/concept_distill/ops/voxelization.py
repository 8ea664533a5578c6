"""MinkUNet voxelisation on the points' own device (mmdet3d's hard-codes ``.cuda()``).

``Det3DDataPreprocessor.voxelize`` with ``voxel_type='minkunet'`` quantises on the CPU with
numpy and then moves the indices with ``.cuda()``, so MinkUNet cannot run without a GPU.
:func:`voxelize_minkunet` is a torch re-implementation that keeps everything on the input's
device; ``concept_distill.patches.minkunet_voxelization`` routes non-CUDA inputs to it.

The quantisation is the same as mmdet3d's: ``round(xyz / voxel_size)`` shifted to start at 0,
voxels ordered by their raveled (x, y, z) key, each voxel represented by the first point
falling in it (features and label). One deliberate difference: when ``max_voxels`` drops
voxels during training, ``point2voxel_map`` is remapped to the kept voxels (``-1`` for points
of dropped voxels) instead of pointing at the pre-subsampling voxel order.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def quantize_points(xyz: Tensor, voxel_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Quantise points to unique voxels, as mmdet3d's MinkUNet voxelisation does.

    Args:
        xyz: (N, 3) point coordinates.
        voxel_size: (3,) voxel edge lengths, same device as ``xyz``.

    Returns:
        coors: (N, 3) int32 voxel coordinate of every point (shifted to start at 0).
        first_idx: (M,) int64 index of the first point of each unique voxel, voxels sorted
            by their raveled coordinate key.
        point2voxel: (N,) int64 index in ``first_idx`` of every point's voxel.
    """
    coors = torch.round(xyz / voxel_size).int()
    coors -= coors.min(0)[0]
    c = coors.long()
    extent = c.max(0)[0] + 1
    key = (c[:, 0] * extent[1] + c[:, 1]) * extent[2] + c[:, 2]
    unique_keys, point2voxel = torch.unique(key, sorted=True, return_inverse=True)
    num_points = xyz.shape[0]
    first_idx = torch.full((unique_keys.shape[0], ), num_points, dtype=torch.long,
                           device=xyz.device)
    first_idx.scatter_reduce_(0, point2voxel,
                              torch.arange(num_points, device=xyz.device), reduce='amin')
    return coors, first_idx, point2voxel


def _subsample_voxels(first_idx: Tensor, point2voxel: Tensor,
                      max_voxels: int) -> tuple[Tensor, Tensor]:
    """Keep a random ``max_voxels`` subset; points of dropped voxels map to -1."""
    num_voxels = first_idx.shape[0]
    keep = torch.randperm(num_voxels, device=first_idx.device)[:max_voxels].sort()[0]
    remap = torch.full((num_voxels, ), -1, dtype=torch.long, device=first_idx.device)
    remap[keep] = torch.arange(keep.shape[0], device=first_idx.device)
    return first_idx[keep], remap[point2voxel]


@torch.no_grad()
def voxelize_minkunet(points: Sequence[Tensor],
                      data_samples: Sequence,
                      voxel_size: Sequence[float],
                      max_voxels: int | None = None,
                      batch_first: bool = True) -> dict[str, Tensor]:
    """Voxelise a batch for MinkUNet on the points' device; mirrors mmdet3d's ``minkunet`` type.

    Sets ``batch_idx``, ``point2voxel_map`` and (when point labels exist)
    ``gt_pts_seg.voxel_semantic_mask`` on each data sample, like mmdet3d.

    Returns:
        dict(voxels=(M, C) features of each voxel's first point,
             coors=(M, 4) int32 (batch, x, y, z), or (x, y, z, batch) if not ``batch_first``).
    """
    voxels, coors = [], []
    size = points[0].new_tensor(voxel_size)
    for i, (res, data_sample) in enumerate(zip(points, data_samples)):
        res_coors, first_idx, point2voxel = quantize_points(res[:, :3], size)
        if max_voxels is not None and first_idx.shape[0] > max_voxels:
            first_idx, point2voxel = _subsample_voxels(first_idx, point2voxel, max_voxels)
        gt_pts_seg = getattr(data_sample, 'gt_pts_seg', None)
        if gt_pts_seg is not None and hasattr(gt_pts_seg, 'pts_semantic_mask'):
            gt_pts_seg.voxel_semantic_mask = gt_pts_seg.pts_semantic_mask[first_idx]
        res_voxel_coors = res_coors[first_idx]
        if batch_first:
            res_voxel_coors = F.pad(res_voxel_coors, (1, 0), mode='constant', value=i)
            data_sample.batch_idx = res_voxel_coors[:, 0]
        else:
            res_voxel_coors = F.pad(res_voxel_coors, (0, 1), mode='constant', value=i)
            data_sample.batch_idx = res_voxel_coors[:, -1]
        data_sample.point2voxel_map = point2voxel
        voxels.append(res[first_idx])
        coors.append(res_voxel_coors)
    return dict(voxels=torch.cat(voxels, dim=0), coors=torch.cat(coors, dim=0))
