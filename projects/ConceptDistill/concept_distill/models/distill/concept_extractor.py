"""Concept extraction: learnable concept queries cross-attending to point tokens."""
from __future__ import annotations

import torch
from mmdet3d.registry import MODELS
from torch import nn

from concept_distill.models.distill.point_tokens import PointTokens
from concept_distill.models.distill.position_encoding import (
    FourierPositionEncoding,
    LearnedPositionEncoding,
)


class ConceptLayer(nn.Module):
    """Pre-norm layer: [self-attention among concepts] -> cross-attention to points -> FFN."""

    def __init__(self, embed_dims: int, num_heads: int, ffn_ratio: float, dropout: float,
                 self_attn: bool) -> None:
        super().__init__()
        self.self_attn = (nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                                batch_first=True) if self_attn else None)
        self.norm_self = nn.LayerNorm(embed_dims) if self_attn else None
        self.cross_attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                                batch_first=True)
        self.norm_q = nn.LayerNorm(embed_dims)
        hidden = int(embed_dims * ffn_ratio)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, embed_dims))
        self.norm_ffn = nn.LayerNorm(embed_dims)
        self.drop = nn.Dropout(dropout)

    def forward(self, concepts: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                pad_mask: torch.Tensor | None, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """concepts (B,K,C); keys/values (B,N,C); pad_mask (B,N) True where padded.

        With ``return_attention`` also the cross-attention weights (B, K, N), averaged over
        heads (each row sums to 1 over the unpadded tokens).
        """
        if self.self_attn is not None:
            q = self.norm_self(concepts)
            concepts = concepts + self.drop(self.self_attn(q, q, q, need_weights=False)[0])
        q = self.norm_q(concepts)
        # Weights are asked for only when wanted: need_weights=True leaves torch's fused path.
        attended, weights = self.cross_attn(q, keys, values, key_padding_mask=pad_mask,
                                            need_weights=return_attention,
                                            average_attn_weights=True)
        concepts = concepts + self.drop(attended)
        concepts = concepts + self.drop(self.ffn(self.norm_ffn(concepts)))
        return (concepts, weights) if return_attention else concepts


@MODELS.register_module()
class ConceptExtractor(nn.Module):
    """K learnable concept queries read point tokens through L cross-attention layers.

    Q = concepts, K = point features + positional encoding of xyz, V = point features; an
    optional self-attention among concepts precedes each cross-attention; an MLP maps the
    concepts to the teacher's dimension ("transformed concept tokens").

    Args:
        in_channels: width C of the point-token features.
        out_dim: the teacher's embedding width D (the distiller fills it from the teacher).
        num_concepts: K, number of concept queries (default 16; sensible range 4-64; must equal
            the mapper's prefix count when the token-wise loss is used).
        embed_dims: width of the concept stream.
        num_layers: L cross-attention layers.
        num_heads: attention heads.
        ffn_ratio: FFN hidden width / embed_dims.
        dropout: attention / FFN dropout.
        self_attn: self-attention among concepts in every layer.
        pos_encoding: 'fourier' (random Fourier features + Linear), 'learned' (MLP) or None.
        pos_center: subtract each cloud's token centroid before encoding, so the encoding
            describes the layout of the scene part, not where the sensor happened to stand.
        num_freqs / fourier_scale: Fourier features count and frequency scale (cycles / metre).
        mlp_hidden: hidden width of the output MLP (None: max(embed_dims, out_dim)).
    """

    def __init__(self,
                 in_channels: int = 256,
                 out_dim: int = 512,
                 num_concepts: int = 16,
                 embed_dims: int = 256,
                 num_layers: int = 2,
                 num_heads: int = 8,
                 ffn_ratio: float = 4.0,
                 dropout: float = 0.0,
                 self_attn: bool = True,
                 pos_encoding: str | None = 'fourier',
                 pos_center: bool = True,
                 num_freqs: int = 64,
                 fourier_scale: float = 1.0,
                 mlp_hidden: int | None = None) -> None:
        super().__init__()
        if num_concepts < 1 or num_layers < 1:
            raise ValueError('ConceptExtractor needs num_concepts >= 1 and num_layers >= 1')
        self.num_concepts = num_concepts
        self.out_dim = out_dim
        self.pos_center = pos_center
        self.queries = nn.Parameter(torch.empty(num_concepts, embed_dims))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.input_proj = nn.Sequential(nn.Linear(in_channels, embed_dims),
                                        nn.LayerNorm(embed_dims))
        if pos_encoding == 'fourier':
            self.pos_enc = FourierPositionEncoding(embed_dims, num_freqs, fourier_scale)
        elif pos_encoding == 'learned':
            self.pos_enc = LearnedPositionEncoding(embed_dims)
        elif pos_encoding is None:
            self.pos_enc = None
        else:
            raise ValueError(f"pos_encoding must be 'fourier', 'learned' or None, "
                             f'got {pos_encoding!r}')
        self.layers = nn.ModuleList(
            ConceptLayer(embed_dims, num_heads, ffn_ratio, dropout, self_attn)
            for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(embed_dims)
        hidden = mlp_hidden or max(embed_dims, out_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(),
                                 nn.Linear(hidden, out_dim))

    def encode_positions(self, xyz: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Positional encoding of the token positions (centred per cloud if configured)."""
        if self.pos_center:
            if mask is None:
                center = xyz.mean(dim=1, keepdim=True)
            else:
                w = mask.unsqueeze(-1).to(xyz.dtype)
                center = (xyz * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
            xyz = xyz - center
        return self.pos_enc(xyz)

    def forward(self, tokens: PointTokens, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Point tokens -> transformed concept tokens (B, K, out_dim).

        With ``return_attention`` returns ``(concepts, maps)``: ``maps[l]`` is layer ``l``'s
        cross-attention (B, K, N), averaged over heads, each row summing to 1 over the valid
        tokens (what concept ``k`` reads from which point token; ``maps[-1]`` is the last layer).
        """
        xyz, feats, mask = tokens
        values = self.input_proj(feats)
        keys = values + self.encode_positions(xyz, mask) if self.pos_enc is not None else values
        pad_mask = None
        if mask is not None:
            pad_mask = ~mask
            # A cloud with no valid token would make attention softmax over nothing (NaN);
            # let it attend to its padding instead (its features are zeros, harmless).
            empty = pad_mask.all(dim=1)
            if empty.any():
                pad_mask = pad_mask.clone()
                pad_mask[empty] = False
        concepts = self.queries.unsqueeze(0).expand(feats.shape[0], -1, -1)
        maps = []
        for layer in self.layers:
            step = layer(concepts, keys, values, pad_mask, return_attention)
            concepts = step[0] if return_attention else step
            if return_attention:
                maps.append(step[1])
        out = self.mlp(self.norm_out(concepts))
        return (out, maps) if return_attention else out
