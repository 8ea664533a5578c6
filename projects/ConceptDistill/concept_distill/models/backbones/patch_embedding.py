"""Patch tokeniser: a mini-PointNet that turns each point patch into one token."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmcv.cnn import build_norm_layer
from torch import nn


def _point_mlp(in_dim: int, hidden: int, out_dim: int, norm_cfg: dict) -> nn.Sequential:
    """Linear -> norm -> ReLU -> Linear on (M, C) rows (one row per point)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), build_norm_layer(norm_cfg, hidden)[1],
                         nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class PatchEmbedding(nn.Module):
    """Mini-PointNet patch encoder: (B, G, k, in_channels) patches -> (B, G, embed_dims).

    Two shared per-point MLPs with a max-pool after each: the first encodes every point of
    a patch; its patch-wide max (the patch's shape summary) is concatenated to every point's
    feature so the second MLP sees each point in the context of its patch; the second
    max-pool gives the token. Max-pooling makes the token invariant to the order of the
    patch's points. Points arrive relative to their patch centre.

    State-dict keys: ``local_mlp.{0,1,3}.*`` and ``fuse_mlp.{0,1,3}.*`` (Linear, norm, -,
    Linear).

    Args:
        in_channels: per-point input width (3 for relative xyz, + extra feature channels).
        embed_dims: output token width.
        hidden_channels: (h1, h2): the first MLP's hidden and output widths.
        fuse_channels: the second MLP's hidden width (its input is 2 * h2).
        norm_cfg: normalisation inside both MLPs (mmcv config: ``BN1d`` or ``LN``); batch
            statistics are taken over all points of all patches of the batch.
    """

    def __init__(self, in_channels: int = 3, embed_dims: int = 384,
                 hidden_channels: Sequence[int] = (128, 256), fuse_channels: int = 512,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        if len(hidden_channels) != 2:
            raise ValueError(f'hidden_channels must be (h1, h2), got {hidden_channels!r}')
        norm_cfg = dict(norm_cfg or dict(type='BN1d'))
        h1, h2 = hidden_channels
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.local_mlp = _point_mlp(in_channels, h1, h2, norm_cfg)
        self.fuse_mlp = _point_mlp(2 * h2, fuse_channels, embed_dims, norm_cfg)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, G, k, in_channels) -> tokens (B, G, embed_dims)."""
        if patches.dim() != 4 or patches.shape[-1] != self.in_channels:
            raise ValueError(f'PatchEmbedding expects (B, G, k, {self.in_channels}), got '
                             f'{tuple(patches.shape)}')
        b, g, k, c = patches.shape
        # Rows = points: BatchNorm1d and LayerNorm both normalise (M, C) rows.
        local = self.local_mlp(patches.reshape(b * g * k, c)).reshape(b * g, k, -1)
        summary = local.max(dim=1, keepdim=True).values.expand(-1, k, -1)
        fused = torch.cat([summary, local], dim=-1).reshape(b * g * k, -1)
        tokens = self.fuse_mlp(fused).reshape(b * g, k, -1).max(dim=1).values
        return tokens.reshape(b, g, self.embed_dims)
