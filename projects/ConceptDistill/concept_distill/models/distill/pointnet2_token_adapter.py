"""Token adapter for mmdet3d's PointNet2SASSG (VoteNet's backbone)."""
from __future__ import annotations

import torch
from mmdet3d.registry import MODELS
from torch import nn

from concept_distill.models.distill.point_tokens import BaseTokenAdapter, PointTokens


@MODELS.register_module()
class PointNet2TokenAdapter(BaseTokenAdapter):
    """Stack the batch's points, run PointNet2SASSG, read the last FP level as tokens.

    Args:
        out_channels: feature width of the read-out level (256 for VoteNet's backbone).
        level: which FP level to read (-1: the last, densest one, what VoteNet's head reads;
            0: the last SA level). The FP modules after `level` cannot receive a gradient:
            `freeze_unused` (called by the distiller at build) sets them requires_grad=False
            and the forward skips them, so DDP with find_unused_parameters=False works.
        use_dims: point columns fed to the backbone (None: all). The backbone's `in_channels`
            must equal their number; VoteNet on ScanNet uses xyz + height (4).
        num_points: when clouds in a batch differ in size, each is resampled to this many
            points (None: to the smallest cloud) so they stack; PointNet2SASSG needs (B, N, C).
    """

    def __init__(self, out_channels: int = 256, level: int = -1,
                 use_dims: list[int] | None = None, num_points: int | None = None) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.level = level
        self.use_dims = list(use_dims) if use_dims is not None else None
        self.num_points = num_points

    def fp_level(self, backbone: nn.Module) -> int:
        """`level` as an index >= 0 into the backbone's `fp_features` (0 .. number of FPs)."""
        levels = len(getattr(backbone, 'FP_modules', ())) + 1
        level = self.level + levels if self.level < 0 else self.level
        if not 0 <= level < levels:
            raise ValueError(f'PointNet2TokenAdapter.level={self.level} but the backbone has '
                             f'{levels} FP levels (fp_features[0..{levels - 1}])')
        return level

    def unused_modules(self, backbone: nn.Module) -> list[nn.Module]:
        """The FP modules whose output is never read at `level` (none at level -1)."""
        if self.level == -1:  # subclasses read other outputs and keep -1
            return []
        return list(backbone.FP_modules[self.fp_level(backbone):])

    def freeze_unused(self, backbone: nn.Module) -> None:
        """Take the FP modules after `level` out of training (requires_grad=False).

        They get no gradient at all: under DDP each would be a parameter that never takes
        part in the loss, which fails (find_unused_parameters=False) or costs a graph
        traversal per step (True). Frozen, DDP does not track them, and the optimizer skips
        them as a single process would; their (initial) weights are still exported.
        """
        for module in self.unused_modules(backbone):
            module.requires_grad_(False)

    def stack_points(self, points: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """List of (N_i, C) clouds -> (B, N, C), resampling clouds of unequal size."""
        if isinstance(points, torch.Tensor):
            points = list(points) if points.dim() == 3 else [points]
        sizes = {p.shape[0] for p in points}
        target = self.num_points or min(sizes)
        if len(sizes) > 1 or self.num_points is not None:
            points = [self._resample(p, target) for p in points]
        stacked = torch.stack(points)
        if self.use_dims is not None:
            stacked = stacked[..., self.use_dims]
        return stacked.contiguous()

    def _resample(self, p: torch.Tensor, n: int) -> torch.Tensor:
        if p.shape[0] == n:
            return p
        if p.shape[0] == 0:
            raise ValueError('a paired sample has no points; the dataset should have skipped it')
        # Random subset (or repetition when short) during training; a fixed stride otherwise so
        # evaluation is deterministic.
        if self.training:
            replace = p.shape[0] < n
            idx = (torch.randint(p.shape[0], (n,), device=p.device) if replace
                   else torch.randperm(p.shape[0], device=p.device)[:n])
        else:
            idx = torch.linspace(0, p.shape[0] - 1, n, device=p.device).round().long()
        return p[idx]

    def forward(self, backbone: nn.Module, batch_inputs_dict: dict,
                data_samples: list | None = None) -> PointTokens:
        """Points -> PointNet2SASSG -> FP level `level` as (xyz, feats)."""
        points = self.stack_points(batch_inputs_dict['points'])
        skipped = len(self.unused_modules(backbone))
        if skipped:
            # PointNet2SASSG runs its first `num_fp` FP modules: stop at the level read.
            backbone.num_fp -= skipped
            try:
                out = backbone(points)
            finally:
                backbone.num_fp += skipped
        else:
            out = backbone(points)
        xyz = out['fp_xyz'][-1 if skipped else self.level]
        feats = out['fp_features'][-1 if skipped else self.level].transpose(1, 2).contiguous()
        if feats.shape[-1] != self.out_channels:
            raise ValueError(f'PointNet2TokenAdapter.out_channels={self.out_channels} but the '
                             f'backbone level {self.level} has {feats.shape[-1]} channels')
        return PointTokens(xyz, feats, None).check()
