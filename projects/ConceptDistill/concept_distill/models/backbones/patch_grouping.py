"""Point patches: furthest-point-sampled centres and their k nearest neighbours."""
from __future__ import annotations

from typing import NamedTuple

import torch
from mmcv.ops import furthest_point_sample, knn
from torch import nn

# mmcv's knn kernel keeps its k nearest in a fixed-size heap and refuses k >= 100.
_MMCV_KNN_MAX_K = 99


class PointPatches(NamedTuple):
    """Patches of a batch of clouds.

    centers (B, G, 3) patch centres; neighborhood (B, G, k, 3) member xyz minus their centre;
    features (B, G, k, C) the members' extra point features, or None for xyz-only clouds;
    center_idx (B, G) long index of each centre in the input cloud; patch_idx (B, G, k) long
    indices of each patch's members, nearest first (so the centre, or a duplicate of it,
    comes first).
    """

    centers: torch.Tensor
    neighborhood: torch.Tensor
    features: torch.Tensor | None
    center_idx: torch.Tensor
    patch_idx: torch.Tensor


def gather_rows(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values (B, N, C), idx (B, ...) long -> (B, ..., C): per-batch row look-up."""
    b, _, c = values.shape
    flat = idx.reshape(b, -1)
    out = torch.gather(values, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def sample_centers(xyz: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Furthest point sampling: xyz (B, N, 3) -> centre indices (B, G) long."""
    # mmcv's FPS starts from point 0 on both devices (CPU via concept_distill's kernel), so
    # the centres are a deterministic function of the input order.
    return furthest_point_sample(xyz.contiguous(), num_groups).long()


def knn_indices(xyz: torch.Tensor, centers: torch.Tensor, k: int,
                chunk: int = 256) -> torch.Tensor:
    """Indices (B, G, k) long of the k points of xyz (B, N, 3) nearest to each centre."""
    if k <= _MMCV_KNN_MAX_K:
        # Memory-light kernel (no B x G x N distance matrix); sorted nearest first.
        return knn(k, xyz.contiguous(), centers.contiguous()).transpose(1, 2).long()
    # Large patches: exact distances in chunks of centres bound the B x chunk x N matrix.
    out = []
    for start in range(0, centers.shape[1], chunk):
        part = centers[:, start:start + chunk]
        dist = ((part.unsqueeze(2) - xyz.unsqueeze(1)) ** 2).sum(-1)
        out.append(dist.topk(k, dim=-1, largest=False, sorted=True).indices)
    return torch.cat(out, dim=1)


class PatchGrouping(nn.Module):
    """Cut clouds into ``num_groups`` patches of ``group_size`` points (FPS centres + kNN).

    Patch members are expressed relative to their centre (the patch encoder sees local shape;
    where the patch is enters through the positional embedding of the centre). Has no
    parameters, so it adds nothing to the state dict.

    Args:
        num_groups: G, patches per cloud (FPS centres).
        group_size: k, points per patch (the centre included).
    """

    def __init__(self, num_groups: int = 64, group_size: int = 32) -> None:
        super().__init__()
        if num_groups < 1 or group_size < 1:
            raise ValueError(f'PatchGrouping needs num_groups >= 1 and group_size >= 1, got '
                             f'{num_groups} and {group_size}')
        self.num_groups = num_groups
        self.group_size = group_size

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> PointPatches:
        """xyz (B, N, 3), features (B, N, C) or None -> :class:`PointPatches`."""
        if xyz.dim() != 3 or xyz.shape[-1] != 3:
            raise ValueError(f'PatchGrouping expects xyz (B, N, 3), got {tuple(xyz.shape)}')
        n = xyz.shape[1]
        if n < self.num_groups or n < self.group_size:
            raise ValueError(f'a cloud of {n} points cannot give {self.num_groups} patches of '
                             f'{self.group_size} points; sample more points or set smaller '
                             'num_groups / group_size')
        # Index selection is not differentiable anyway; float32 keeps the mmcv kernels happy
        # under autocast and for double inputs.
        with torch.no_grad():
            coords = xyz.detach().float()
            center_idx = sample_centers(coords, self.num_groups)
            patch_idx = knn_indices(coords, gather_rows(coords, center_idx), self.group_size)
        centers = gather_rows(xyz, center_idx)
        neighborhood = gather_rows(xyz, patch_idx) - centers.unsqueeze(2)
        grouped = gather_rows(features, patch_idx) if features is not None else None
        return PointPatches(centers, neighborhood, grouped, center_idx, patch_idx)
