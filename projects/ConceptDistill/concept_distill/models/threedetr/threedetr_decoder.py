"""3DETR's transformer decoder: a stack of pre-norm layers returning every layer's output."""
import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from concept_distill.models.threedetr.transformer_layers import PreNormDecoderLayer


@MODELS.register_module()
class ThreeDETRDecoder(nn.Module):
    """Decoder whose per-layer outputs (after a shared LayerNorm) all feed the box heads.

    Args:
        num_layers: decoder layers (8 in the paper).
        embed_dims, num_heads, ffn_dims, dropout, activation: per-layer settings.
    """

    def __init__(self, num_layers: int = 8, embed_dims: int = 256, num_heads: int = 4,
                 ffn_dims: int = 256, dropout: float = 0.1, activation: str = 'relu'):
        super().__init__()
        self.layers = nn.ModuleList(
            PreNormDecoderLayer(embed_dims, num_heads, ffn_dims, dropout, activation)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dims)
        self.embed_dims = embed_dims
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, query: Tensor, memory: Tensor, query_pos: Tensor,
                memory_pos: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """Return (num_layers, B, Q, C): each layer's normalised query features."""
        outputs = []
        for layer in self.layers:
            query = layer(query, memory, query_pos, memory_pos, memory_mask)
            outputs.append(self.norm(query))
        return torch.stack(outputs)
