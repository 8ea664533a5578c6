"""Heading angle <-> (bin class, normalised residual) as 3DETR parametrises yaw."""
import math

import torch
from torch import Tensor


class HeadingBinCoder:
    """Split [0, 2*pi) into ``num_bins`` bins centred on k * 2*pi / num_bins.

    The residual is the offset from the bin centre divided by pi / num_bins, so a target
    lies in [-1, 1]. With one bin the heading is not predicted (yaw is always 0).
    """

    def __init__(self, num_bins: int = 12):
        if num_bins < 1:
            raise ValueError(f'num_bins must be >= 1, got {num_bins}')
        self.num_bins = num_bins
        self.bin_size = 2 * math.pi / num_bins

    def encode(self, yaw: Tensor) -> tuple[Tensor, Tensor]:
        """yaw (...,) radians -> (bin class (...,) long, normalised residual (...,))."""
        if self.num_bins == 1:
            return torch.zeros_like(yaw, dtype=torch.long), torch.zeros_like(yaw)
        shifted = torch.remainder(torch.remainder(yaw, 2 * math.pi) + self.bin_size / 2,
                                  2 * math.pi)
        cls = torch.div(shifted, self.bin_size, rounding_mode='floor').long()
        cls = cls.clamp(max=self.num_bins - 1)
        residual = shifted - (cls * self.bin_size + self.bin_size / 2)
        return cls, residual / (math.pi / self.num_bins)

    def decode(self, logits: Tensor, residual: Tensor) -> Tensor:
        """(..., num_bins) logits and normalised residuals -> yaw (...,) in (-pi, pi]."""
        cls = logits.argmax(-1, keepdim=True)
        res = residual.gather(-1, cls).squeeze(-1) * (math.pi / self.num_bins)
        yaw = cls.squeeze(-1).to(res.dtype) * self.bin_size + res
        return torch.where(yaw > math.pi, yaw - 2 * math.pi, yaw)
