"""Positional encodings of token xyz for the concept extractor."""
from __future__ import annotations

import math

import torch
from torch import nn


class FourierPositionEncoding(nn.Module):
    """Random Fourier features of xyz, [sin, cos](2 pi x B) with a fixed Gaussian B, then Linear."""

    def __init__(self, embed_dims: int, num_freqs: int = 64, scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        # A fixed (non-learned) frequency matrix, saved with the model so a reloaded extractor
        # encodes positions identically.
        self.register_buffer('freqs', torch.randn(3, num_freqs, generator=gen) * scale)
        self.proj = nn.Linear(2 * num_freqs, embed_dims)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, N, embed_dims)."""
        angles = 2 * math.pi * xyz @ self.freqs
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


class LearnedPositionEncoding(nn.Module):
    """A two-layer MLP of xyz (the learned encoding of Point-BERT / 3DETR style)."""

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, embed_dims), nn.GELU(),
                                 nn.Linear(embed_dims, embed_dims))

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, N, embed_dims)."""
        return self.mlp(xyz)
