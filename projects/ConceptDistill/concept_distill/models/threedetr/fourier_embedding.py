"""Random Fourier-feature positional embedding of xyz, as 3DETR uses for queries and keys."""
import math

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn


def normalize_to_scene(xyz: Tensor, xyz_min: Tensor, xyz_max: Tensor) -> Tensor:
    """Map (B, N, 3) coordinates into [0, 1]^3 using each scene's (B, 3) bounds."""
    extent = (xyz_max - xyz_min).clamp(min=1e-6)
    return (xyz - xyz_min[:, None, :]) / extent[:, None, :]


@MODELS.register_module()
class FourierPositionEmbedding3D(nn.Module):
    """sin/cos of xyz (normalised to the scene box) projected on fixed Gaussian directions.

    Args:
        embed_dims: output channels (even): half sin, half cos.
        in_dims: coordinate dimensions.
        gauss_scale: standard deviation of the random projection (the frequency scale).
    """

    def __init__(self, embed_dims: int = 256, in_dims: int = 3, gauss_scale: float = 1.0):
        super().__init__()
        if embed_dims % 2:
            raise ValueError(f'embed_dims must be even, got {embed_dims}')
        # A buffer, not a parameter: the projection is fixed, but it must travel with the
        # checkpoint or a reloaded model would see different positional codes.
        self.register_buffer('gauss_b', torch.randn(in_dims, embed_dims // 2) * gauss_scale)
        self.embed_dims = embed_dims

    def forward(self, xyz: Tensor, xyz_min: Tensor, xyz_max: Tensor) -> Tensor:
        """(B, N, 3) xyz and (B, 3) scene bounds -> (B, N, embed_dims) embedding."""
        unit = normalize_to_scene(xyz.detach(), xyz_min, xyz_max)
        proj = (2 * math.pi * unit) @ self.gauss_b.to(unit.dtype)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)
