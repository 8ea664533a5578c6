"""The token-adapter protocol: how any backbone hands point tokens to the concept extractor."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class PointTokens(NamedTuple):
    """Point tokens read out of a backbone.

    xyz (B, N, 3) token positions (metres, the points' frame); feats (B, N, C) token features;
    mask (B, N) bool, True for real tokens, or None when every token is real (fixed-size
    backbones such as PointNet++). Padded tokens (mask False) are ignored by the extractor.
    """

    xyz: torch.Tensor
    feats: torch.Tensor
    mask: torch.Tensor | None = None

    def check(self) -> PointTokens:
        """Validate shapes; return self so adapters can `return tokens.check()`."""
        if self.xyz.dim() != 3 or self.xyz.shape[-1] != 3:
            raise ValueError(f'PointTokens.xyz must be (B, N, 3), got {tuple(self.xyz.shape)}')
        if self.feats.dim() != 3 or self.feats.shape[:2] != self.xyz.shape[:2]:
            raise ValueError(f'PointTokens.feats must be (B, N, C) matching xyz '
                             f'{tuple(self.xyz.shape)}, got {tuple(self.feats.shape)}')
        if self.mask is not None and (self.mask.shape != self.xyz.shape[:2]
                                      or self.mask.dtype != torch.bool):
            raise ValueError(f'PointTokens.mask must be bool (B, N), got '
                             f'{self.mask.dtype} {tuple(self.mask.shape)}')
        return self


class BaseTokenAdapter(nn.Module):
    """Runs a backbone on the preprocessed batch and returns its output as `PointTokens`.

    Subclasses implement `forward(backbone, batch_inputs_dict, data_samples) -> PointTokens`
    and set `out_channels` (C of `feats`) so the distiller can size the concept extractor.
    The distiller never special-cases a backbone; only adapters know backbone outputs.
    """

    out_channels: int

    def forward(self, backbone: nn.Module, batch_inputs_dict: dict,
                data_samples: list | None = None) -> PointTokens:
        """Backbone forward + token read-out."""
        raise NotImplementedError
