"""Token adapter for mmdet3d's MinkUNetBackbone: voxel features mapped back to points."""
from __future__ import annotations

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from concept_distill.models.distill.point_tokens import BaseTokenAdapter, PointTokens
from concept_distill.ops.voxelization import voxelize_minkunet


@MODELS.register_module()
class MinkUNetTokenAdapter(BaseTokenAdapter):
    """Run MinkUNetBackbone on the voxelised batch; every point takes its voxel's feature.

    Uses the voxels of the data preprocessor (``voxel=True, voxel_type='minkunet'``) when the
    batch has them, else voxelises the points itself at ``voxel_size``. Clouds of a batch differ
    in size, so tokens are padded to the largest and ``mask`` marks the real ones.

    Args:
        out_channels: width of the backbone output (``decoder_channels[-1]``, 96 by default).
        voxel_size: voxel edge in metres, used only when the batch carries no voxels.
        max_tokens: keep at most this many points per cloud (a random subset in training, a
            fixed stride in eval): points of one voxel share a feature, so a dense frame gives
            many duplicate tokens. None keeps every point.
    """

    def __init__(self, out_channels: int = 96, voxel_size: float | None = 0.02,
                 max_tokens: int | None = None) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.voxel_size = voxel_size
        self.max_tokens = max_tokens

    def _voxels(self, batch_inputs_dict: dict, data_samples: list) -> dict:
        if 'voxels' in batch_inputs_dict:
            return batch_inputs_dict['voxels']
        if self.voxel_size is None:
            raise ValueError('MinkUNetTokenAdapter: the batch has no voxels and voxel_size is '
                             "None; set the data preprocessor's voxel=True, "
                             "voxel_type='minkunet', or give the adapter a voxel_size")
        return voxelize_minkunet(batch_inputs_dict['points'], data_samples,
                                 voxel_size=[self.voxel_size] * 3, batch_first=True)

    def _select(self, num_valid: int, device: torch.device) -> Tensor | None:
        """Indices (into the valid points) of the kept tokens, or None to keep all."""
        if self.max_tokens is None or num_valid <= self.max_tokens:
            return None
        if self.training:
            return torch.randperm(num_valid, device=device)[:self.max_tokens]
        return torch.linspace(0, num_valid - 1, self.max_tokens, device=device).round().long()

    def forward(self, backbone: nn.Module, batch_inputs_dict: dict,
                data_samples: list | None = None) -> PointTokens:
        """Voxels -> MinkUNetBackbone -> per-point features, padded to (B, N, C) + mask."""
        points = batch_inputs_dict['points']
        if data_samples is None:
            raise ValueError('MinkUNetTokenAdapter needs the data samples (they carry the '
                             'point-to-voxel maps)')
        voxel_dict = self._voxels(batch_inputs_dict, data_samples)
        voxel_feats = backbone(voxel_dict['voxels'], voxel_dict['coors'])
        if voxel_feats.shape[-1] != self.out_channels:
            raise ValueError(f'MinkUNetTokenAdapter.out_channels={self.out_channels} but the '
                             f'backbone outputs {voxel_feats.shape[-1]} channels')
        batch_idx = torch.cat([sample.batch_idx for sample in data_samples])
        xyz_list, feat_list = [], []
        for i, (pts, sample) in enumerate(zip(points, data_samples)):
            sample_feats = voxel_feats[batch_idx == i]
            point2voxel = sample.point2voxel_map
            if point2voxel.shape[0] != pts.shape[0] or (
                    point2voxel.numel() and int(point2voxel.max()) >= sample_feats.shape[0]):
                raise ValueError(
                    f'MinkUNetTokenAdapter: sample {i} has a point2voxel_map that does not index '
                    f'its {sample_feats.shape[0]} voxels ({point2voxel.shape[0]} entries for '
                    f'{pts.shape[0]} points); mmdet3d CUDA voxelisation with max_voxels '
                    'breaks the map, so pre-train with max_voxels=None')
            valid = torch.nonzero(point2voxel >= 0).squeeze(1)  # -1: voxel dropped
            keep = self._select(valid.shape[0], pts.device)
            if keep is not None:
                valid = valid[keep]
            xyz_list.append(pts[valid, :3])
            feat_list.append(sample_feats[point2voxel[valid]])
        return self.pad(xyz_list, feat_list)

    @staticmethod
    def pad(xyz_list: list[Tensor], feat_list: list[Tensor]) -> PointTokens:
        """Pad per-cloud (N_i, 3) / (N_i, C) tensors to (B, N, .) with a True-for-real mask."""
        num = max(max(x.shape[0] for x in xyz_list), 1)
        batch, channels = len(xyz_list), feat_list[0].shape[-1]
        ref = feat_list[0]
        xyz = ref.new_zeros((batch, num, 3))
        feats = ref.new_zeros((batch, num, channels))
        mask = torch.zeros((batch, num), dtype=torch.bool, device=ref.device)
        for i, (x, f) in enumerate(zip(xyz_list, feat_list)):
            xyz[i, :x.shape[0]] = x.to(xyz.dtype)
            feats[i, :f.shape[0]] = f
            mask[i, :x.shape[0]] = True
        return PointTokens(xyz, feats, mask).check()
