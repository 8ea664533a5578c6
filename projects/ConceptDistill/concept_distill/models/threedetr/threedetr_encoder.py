"""3DETR encoder backbone: PointNet++ set-abstraction pre-encoder + transformer encoder."""
from collections.abc import Sequence

import torch
from mmdet3d.models.layers import PointSAModule
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from concept_distill.models.threedetr.transformer_layers import PreNormEncoderLayer


@MODELS.register_module()
class ThreeDETREncoder(BaseModule):
    """Point cloud (B, N, 3 + C) -> M encoded point tokens; the part of 3DETR that transfers.

    The pre-encoder is one set-abstraction layer (FPS to ``num_points`` centres, ball query,
    shared MLP, max-pool). The transformer encoder has no positional embedding: position
    enters through the pre-encoder's xyz-relative features, as in the paper.

    The masked variant (3DETR-m) is enabled by ``masking_radius``: layer ``i`` lets a token
    attend only to tokens closer than ``masking_radius[i]`` metres, and a second
    set-abstraction layer halves the tokens after the first layer.

    Args:
        in_channels: channels per input point, xyz included (3 = xyz only).
        num_points, radius, num_samples, sa_channels: the pre-encoder's FPS count, ball
            radius, neighbours per ball and hidden MLP widths (its output is ``embed_dims``).
        embed_dims, num_layers, num_heads, ffn_dims, dropout, activation: transformer.
        masking_radius: per-layer attention radius in metres, or None for the plain encoder.
        interim_num_points, interim_radius, interim_num_samples, interim_channels: the
            downsampling layer after the first masked layer (masked variant only).
        norm_cfg: normalisation of the set-abstraction MLPs.
    """

    def __init__(self,
                 in_channels: int = 3,
                 num_points: int = 2048,
                 radius: float = 0.2,
                 num_samples: int = 64,
                 sa_channels: Sequence[int] = (64, 128),
                 embed_dims: int = 256,
                 num_layers: int = 3,
                 num_heads: int = 4,
                 ffn_dims: int = 128,
                 dropout: float = 0.1,
                 activation: str = 'relu',
                 masking_radius: Sequence[float] | None = None,
                 interim_num_points: int = 1024,
                 interim_radius: float = 0.4,
                 interim_num_samples: int = 32,
                 interim_channels: Sequence[int] = (256, 256),
                 norm_cfg: dict | None = None,
                 init_cfg: dict | list | None = None):
        super().__init__(init_cfg=init_cfg)
        norm_cfg = norm_cfg or dict(type='BN2d')
        if in_channels < 3:
            raise ValueError(f'in_channels counts xyz and must be >= 3, got {in_channels}')
        if masking_radius is not None and len(masking_radius) != num_layers:
            raise ValueError(f'masking_radius needs one radius per layer ({num_layers}), '
                             f'got {list(masking_radius)}')
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.masking_radius = None if masking_radius is None else list(masking_radius)
        self.pre_encoder = PointSAModule(
            mlp_channels=[in_channels - 3, *sa_channels, embed_dims],
            num_point=num_points, radius=radius, num_sample=num_samples,
            norm_cfg=norm_cfg, use_xyz=True, pool_mod='max', normalize_xyz=True)
        self.layers = nn.ModuleList(
            PreNormEncoderLayer(embed_dims, num_heads, ffn_dims, dropout, activation)
            for _ in range(num_layers))
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.interim_downsample = None
        if self.masking_radius is not None:
            self.interim_downsample = PointSAModule(
                mlp_channels=[embed_dims, *interim_channels, embed_dims],
                num_point=interim_num_points, radius=interim_radius,
                num_sample=interim_num_samples, norm_cfg=norm_cfg, use_xyz=True,
                pool_mod='max', normalize_xyz=True)

    @property
    def is_masked(self) -> bool:
        """Whether this is the masked (3DETR-m) variant."""
        return self.masking_radius is not None

    def forward(self, points: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """Encode (B, N, in_channels) points.

        Returns:
            dict with ``xyz`` (B, M, 3), ``features`` (B, M, C), ``indices`` (B, M) long
            (rows of the input each token sits on), and per-layer ``layer_xyz`` /
            ``layer_features`` lists (for concept extraction interleaved with the layers).
        """
        if points.dim() != 3 or points.size(-1) != self.in_channels:
            raise ValueError(f'expected points of shape (B, N, {self.in_channels}), '
                             f'got {tuple(points.shape)}')
        xyz = points[..., :3].contiguous()
        feats = points[..., 3:].transpose(1, 2).contiguous() if self.in_channels > 3 else None
        xyz, feats, indices = self.pre_encoder(xyz, feats)
        indices = indices.long()
        x = feats.transpose(1, 2)
        dist = None
        layer_xyz, layer_features = [], []
        for i, layer in enumerate(self.layers):
            mask = None
            if self.masking_radius is not None:
                if dist is None:
                    with torch.no_grad():
                        dist = torch.cdist(xyz, xyz)
                mask = dist >= self.masking_radius[i]
            x = layer(x, attn_mask=mask)
            if i == 0 and self.interim_downsample is not None:
                xyz, down, sub = self.interim_downsample(xyz, x.transpose(1, 2).contiguous())
                x = down.transpose(1, 2)
                indices = indices.gather(1, sub.long())
                dist = None
            layer_xyz.append(xyz)
            layer_features.append(x)
        return dict(xyz=xyz, features=x, indices=indices, layer_xyz=layer_xyz,
                    layer_features=layer_features)
