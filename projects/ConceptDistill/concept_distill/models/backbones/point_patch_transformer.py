"""The paper's student: a standard point-patch transformer (patch tokens + L pre-norm blocks)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from torch import nn

from concept_distill.models.backbones.patch_embedding import PatchEmbedding
from concept_distill.models.backbones.patch_grouping import PatchGrouping


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample with probability ``p`` (training)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'drop path probability must be in [0, 1), got {p}')
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) -> x with whole samples zeroed, the kept ones scaled by 1 / (1 - p)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f'p={self.p}'


class PatchSelfAttention(nn.Module):
    """Multi-head self-attention over patch tokens (fused qkv projection, output projection)."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, c // self.num_heads) \
            .permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, t, c)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(embed_dims * mlp_ratio)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = PatchSelfAttention(embed_dims, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(hidden, embed_dims), nn.Dropout(drop))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@MODELS.register_module()
class PointPatchTransformer(BaseModule):
    """Point-patch transformer: FPS + kNN patches -> mini-PointNet tokens -> L pre-norm blocks.

    The student of the source paper's figure ("Tokenize + Encoding", then x12 blocks of
    self-attention + FFN), with the Point-BERT / Point-MAE layout: ``num_groups`` patches of
    ``group_size`` points, centres by furthest point sampling, members by kNN, expressed
    relative to their centre; a mini-PointNet per patch; a learned MLP embedding of the
    centre's xyz, added to the input of every block (position re-enters each block, as in
    Point-BERT / Point-MAE); an optional class token; a final LayerNorm. Every block's
    patch tokens are returned so a concept extractor can read each layer.

    Input ``points`` (B, N, in_channels): xyz first, then ``in_channels - 3`` extra point
    features (colour, height ...), which the patch encoder sees next to the relative xyz.

    Output dict:
        ``xyz`` (B, G, 3) patch centres; ``tokens``: list of ``depth`` tensors (B, G, C), the
        patch tokens after each block (the last one after the final norm); ``features``
        (B, G, C) = ``tokens[-1]``; ``cls`` (B, C) the normalised class token or None;
        ``center_idx`` (B, G) long, the centres' indices in ``points``; ``patch_idx``
        (B, G, group_size) long, each patch's members (nearest first).

    State-dict layout (stable: the downstream classification / part-segmentation / detection
    models load it with ``prefix='backbone.'``; ``grouping`` has no parameters)::

        patch_embed.local_mlp.{0,1,3}.*   per-point MLP (Linear, norm, Linear)
        patch_embed.fuse_mlp.{0,1,3}.*    point + patch-summary MLP (Linear, norm, Linear)
        pos_embed.{0,2}.*                 centre xyz -> C (Linear, GELU, Linear)
        cls_token, cls_pos                (1, 1, C) each, only with use_cls_token
        blocks.{i}.norm1.*                LayerNorm before attention
        blocks.{i}.attn.qkv.*             (3C, C) fused q, k, v projection
        blocks.{i}.attn.proj.*            (C, C) attention output projection
        blocks.{i}.norm2.*                LayerNorm before the MLP
        blocks.{i}.mlp.{0,3}.*            MLP (C -> mlp_ratio * C -> C)
        norm.*                            final LayerNorm

    BatchNorm running statistics (``norm_cfg`` ``BN1d``, the default) add
    ``running_mean`` / ``running_var`` / ``num_batches_tracked`` under ``patch_embed``.

    Args:
        in_channels: channels per input point, xyz included (3 = xyz only).
        num_groups: G, patches per cloud (64 for 1k-point objects; scenes need more).
        group_size: k, points per patch.
        embed_dims: C, token width.
        depth: L, number of blocks.
        num_heads: attention heads.
        mlp_ratio: block MLP hidden width / C.
        qkv_bias: bias in the q, k, v projection.
        drop_rate / attn_drop_rate: dropout after projections / on attention weights.
        drop_path_rate: stochastic depth of the last block (linearly 0 -> it over the blocks).
        use_cls_token: prepend a learned class token (its output is ``cls``).
        patch_hidden_channels / patch_fuse_channels / norm_cfg: the patch encoder's widths
            and normalisation (see :class:`PatchEmbedding`).
        pos_hidden: hidden width of the positional MLP.
        init_cfg: mmengine init config (e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')``).
    """

    def __init__(self,
                 in_channels: int = 3,
                 num_groups: int = 64,
                 group_size: int = 32,
                 embed_dims: int = 384,
                 depth: int = 12,
                 num_heads: int = 6,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 use_cls_token: bool = False,
                 patch_hidden_channels: Sequence[int] = (128, 256),
                 patch_fuse_channels: int = 512,
                 norm_cfg: dict | None = None,
                 pos_hidden: int = 128,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels < 3:
            raise ValueError(f'in_channels counts xyz and must be >= 3, got {in_channels}')
        if depth < 1:
            raise ValueError(f'depth must be >= 1, got {depth}')
        self.in_channels = in_channels
        self.num_groups = num_groups
        self.group_size = group_size
        self.embed_dims = embed_dims
        self.depth = depth
        self.use_cls_token = use_cls_token
        self.grouping = PatchGrouping(num_groups, group_size)
        self.patch_embed = PatchEmbedding(in_channels, embed_dims, patch_hidden_channels,
                                          patch_fuse_channels, norm_cfg)
        self.pos_embed = nn.Sequential(nn.Linear(3, pos_hidden), nn.GELU(),
                                       nn.Linear(pos_hidden, embed_dims))
        if use_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, embed_dims))
        else:
            self.cls_token = self.cls_pos = None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dims, num_heads, mlp_ratio, qkv_bias, drop_rate,
                             attn_drop_rate, rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dims)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # ViT-style: small truncated-normal weights keep the residual stream near identity
        # at the start, which 12 blocks need to train stably from scratch.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.use_cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)

    def forward(self, points: torch.Tensor) -> dict:
        """points (B, N, in_channels) -> dict (see the class docstring)."""
        if points.dim() != 3 or points.shape[-1] != self.in_channels:
            raise ValueError(f'PointPatchTransformer(in_channels={self.in_channels}) expects '
                             f'points (B, N, {self.in_channels}), got {tuple(points.shape)}')
        xyz = points[..., :3]
        extra = points[..., 3:] if self.in_channels > 3 else None
        patches = self.grouping(xyz, extra)
        local = patches.neighborhood if patches.features is None else \
            torch.cat([patches.neighborhood, patches.features], dim=-1)
        x = self.patch_embed(local)
        pos = self.pos_embed(patches.centers)
        if self.use_cls_token:
            b = x.shape[0]
            x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], dim=1)
        first = 1 if self.use_cls_token else 0
        tokens = []
        for i, block in enumerate(self.blocks):
            x = block(x + pos)
            if i == len(self.blocks) - 1:
                x = self.norm(x)
            tokens.append(x[:, first:])
        return dict(xyz=patches.centers, tokens=tokens, features=tokens[-1],
                    cls=x[:, 0] if self.use_cls_token else None,
                    center_idx=patches.center_idx, patch_idx=patches.patch_idx)
