"""Pre-norm transformer encoder and decoder layers of 3DETR (batch-first tensors)."""
from torch import Tensor, nn

_ACTIVATIONS = {'relu': nn.ReLU, 'gelu': nn.GELU}


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class PreNormEncoderLayer(nn.Module):
    """Self-attention + FFN, LayerNorm before each block (3DETR's encoder layer).

    Args:
        embed_dims: token width.
        num_heads: attention heads.
        ffn_dims: hidden width of the feed-forward block.
        dropout: dropout in attention, after each block and inside the FFN.
        activation: 'relu' or 'gelu'.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 4, ffn_dims: int = 128,
                 dropout: float = 0.1, activation: str = 'relu'):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(embed_dims)
        self.self_attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                               batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, ffn_dims), _ACTIVATIONS[activation](), nn.Dropout(dropout),
            nn.Linear(ffn_dims, embed_dims))
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None,
                pos: Tensor | None = None) -> Tensor:
        """x (B, N, C); attn_mask (B, N, N) bool, True = may not attend; pos (B, N, C)."""
        if attn_mask is not None:
            # nn.MultiheadAttention wants one mask per (batch, head), batch-major.
            attn_mask = attn_mask.repeat_interleave(self.num_heads, dim=0)
        h = self.norm1(x)
        qk = _with_pos(h, pos)
        x = x + self.drop1(self.self_attn(qk, qk, h, attn_mask=attn_mask,
                                          need_weights=False)[0])
        return x + self.drop2(self.ffn(self.norm2(x)))


class PreNormDecoderLayer(nn.Module):
    """Query self-attention, cross-attention to encoder tokens, FFN; pre-norm (3DETR)."""

    def __init__(self, embed_dims: int = 256, num_heads: int = 4, ffn_dims: int = 256,
                 dropout: float = 0.1, activation: str = 'relu'):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.self_attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                               batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.cross_attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                                batch_first=True)
        self.drop2 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, ffn_dims), _ACTIVATIONS[activation](), nn.Dropout(dropout),
            nn.Linear(ffn_dims, embed_dims))
        self.drop3 = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, query_pos: Tensor | None = None,
                memory_pos: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        """query (B, Q, C), memory (B, N, C); memory_mask (B, N) bool, True = padding."""
        h = self.norm1(query)
        qk = _with_pos(h, query_pos)
        query = query + self.drop1(self.self_attn(qk, qk, h, need_weights=False)[0])
        h = self.norm2(query)
        attn = self.cross_attn(_with_pos(h, query_pos), _with_pos(memory, memory_pos), memory,
                               key_padding_mask=memory_mask, need_weights=False)[0]
        query = query + self.drop2(attn)
        return query + self.drop3(self.ffn(self.norm3(query)))
