"""Frozen ClipCap caption-mapping networks: CLIP image embedding -> K prefix tokens.

ClipCap (Mokady et al., 2021; github.com/rmokady/CLIP_prefix_caption) saves the state dict of
its whole captioning model: the mapping network under ``clip_project.*`` and GPT-2 under
``gpt.*``. Both of its mapping types are rebuilt here with the same parameter names below
``clip_project.``, so a released file loads as it is:

- ``'mlp'``: ``model.0`` Linear(D, K*W/2) - Tanh - ``model.2`` Linear(K*W/2, K*W); the
  released COCO and Conceptual Captions models: D = 512 (ViT-B/32), K = 10, W = 768 (GPT-2);
  their input is the raw (unnormalised) CLIP image embedding.
- ``'transformer'``: ``linear`` Linear(D, L*W) makes L tokens from the embedding, a learned
  ``prefix_const`` (K, W) is appended, ``transformer.layers.i`` (pre-norm self-attention
  without q/k/v biases, 8 heads, ReLU MLP x2) run over the L + K tokens, and the last K are
  the prefix. The released COCO model: RN50x4 (D = 640), L = K = 40, 8 layers, unit-norm input.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

CLIPCAP_MAPPER_PREFIX = 'clip_project.'
CLIPCAP_GPT_PREFIX = 'gpt.'
MAPPING_TYPES = ('mlp', 'transformer')


class PrefixMappingNetwork(nn.Module):
    """ClipCap's MLP mapper: (B, D) embedding -> Linear-Tanh-Linear -> (B, K, W) prefix tokens.

    Args:
        embed_dim: D, the CLIP embedding width it reads.
        num_prefix: K prefix tokens (ClipCap: 10).
        prefix_dim: W, width of a prefix token (ClipCap: GPT-2's 768; None: D).
        hidden_dim: hidden width (None: K*W // 2, as ClipCap).
        normalize_input: L2-normalise the embedding first (ClipCap's ``--normalize_prefix``;
            its released MLP models read the raw embedding).
    """

    mapping_type = 'mlp'

    def __init__(self, embed_dim: int, num_prefix: int = 10, prefix_dim: int | None = None,
                 hidden_dim: int | None = None, normalize_input: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_prefix = num_prefix
        self.prefix_dim = prefix_dim or embed_dim
        self.normalize_input = normalize_input
        out_dim = num_prefix * self.prefix_dim
        hidden_dim = hidden_dim or out_dim // 2
        # Indices 0 and 2 of one Sequential: ClipCap's `clip_project.model.{0,2}` names.
        self.model = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.Tanh(),
                                   nn.Linear(hidden_dim, out_dim))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Map embeddings (B, D) to prefix tokens (B, K, W)."""
        x = F.normalize(embedding, dim=-1) if self.normalize_input else embedding
        return self.model(x).view(embedding.shape[0], self.num_prefix, self.prefix_dim)


class _MapperAttention(nn.Module):
    """Multi-head self-attention laid out as ClipCap's: one q matrix, one stacked k|v matrix."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'transformer mapper width {dim} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads = num_heads
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, 2 * dim, bias=False)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, W) -> (B, N, W)."""
        b, n, w = x.shape
        h = self.num_heads
        q = self.to_queries(x).view(b, n, h, w // h).transpose(1, 2)
        # The k|v output is (2, heads, head_dim) per token: keys first, then values.
        kv = self.to_keys_values(x).view(b, n, 2, h, w // h)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.project(out.transpose(1, 2).reshape(b, n, w))


class _MapperMLP(nn.Module):
    """fc1 - ReLU - fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, W) -> (B, N, W)."""
        return self.fc2(F.relu(self.fc1(x)))


class _MapperLayer(nn.Module):
    """Pre-norm block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _MapperAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MapperMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, W) -> (B, N, W)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _MapperTransformer(nn.Module):
    """A stack of `_MapperLayer` under the attribute name ClipCap uses (`layers`)."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, mlp_ratio: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_MapperLayer(dim, num_heads, mlp_ratio)
                                    for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, W) -> (B, N, W)."""
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerPrefixMapper(nn.Module):
    """ClipCap's transformer mapper: (B, D) embedding -> (B, K, W) prefix tokens.

    Args:
        embed_dim: D, the CLIP embedding width it reads.
        num_prefix: K prefix tokens (the learned constants whose outputs are the prefix).
        prefix_dim: W, token width (GPT-2: 768).
        clip_length: L tokens made from the embedding by `linear` (ClipCap's
            ``prefix_length_clip``).
        num_layers / num_heads / mlp_ratio: ClipCap's defaults are 8 / 8 / 2.0.
        normalize_input: L2-normalise the embedding first (ClipCap's released transformer
            model was used this way).
    """

    mapping_type = 'transformer'

    def __init__(self, embed_dim: int, num_prefix: int = 10, prefix_dim: int = 768,
                 clip_length: int = 10, num_layers: int = 8, num_heads: int = 8,
                 mlp_ratio: float = 2.0, normalize_input: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_prefix = num_prefix
        self.prefix_dim = prefix_dim
        self.clip_length = clip_length
        self.normalize_input = normalize_input
        self.linear = nn.Linear(embed_dim, clip_length * prefix_dim)
        self.prefix_const = nn.Parameter(torch.randn(num_prefix, prefix_dim))
        self.transformer = _MapperTransformer(prefix_dim, num_heads, num_layers, mlp_ratio)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Map embeddings (B, D) to prefix tokens (B, K, W)."""
        x = F.normalize(embedding, dim=-1) if self.normalize_input else embedding
        b = embedding.shape[0]
        clip_tokens = self.linear(x).view(b, self.clip_length, self.prefix_dim)
        const = self.prefix_const.unsqueeze(0).expand(b, -1, -1)
        out = self.transformer(torch.cat([clip_tokens, const], dim=1))
        return out[:, self.clip_length:]


def build_prefix_mapper(embed_dim: int, mapping_type: str = 'mlp', **kwargs) -> nn.Module:
    """The mapper of `mapping_type` ('mlp' or 'transformer') reading D = `embed_dim`."""
    # None means "the mapper's own default" (configs spell every field, most left None).
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if mapping_type == 'mlp':
        return PrefixMappingNetwork(embed_dim, **kwargs)
    if mapping_type == 'transformer':
        return TransformerPrefixMapper(embed_dim, **kwargs)
    raise ValueError(f'mapping_type must be one of {MAPPING_TYPES}, got {mapping_type!r}')


def clipcap_mapping_type(state: Mapping) -> str | None:
    """'mlp' / 'transformer' for a ClipCap state dict by its `clip_project.*` keys, else None."""
    if f'{CLIPCAP_MAPPER_PREFIX}model.0.weight' in state:
        return 'mlp'
    if f'{CLIPCAP_MAPPER_PREFIX}prefix_const' in state:
        return 'transformer'
    return None


def clipcap_input_width(state: Mapping) -> int | None:
    """Width of the CLIP embedding a ClipCap mapper state dict reads (None if unknown)."""
    for key in ('model.0.weight', 'linear.weight'):
        weight = state.get(CLIPCAP_MAPPER_PREFIX + key)
        if weight is not None and getattr(weight, 'dim', lambda: 0)() == 2:
            return int(weight.shape[1])
    return None


def load_clipcap_mapper(mapper: nn.Module, state: Mapping, source: str) -> dict[str, int]:
    """Load a ClipCap file's `clip_project.*` tensors into `mapper`; `gpt.*` are ignored.

    Any other key, a missing or unexpected `clip_project.*` key, or a shape mismatch raises a
    ValueError that names the file and the keys. Returns the kept / ignored counts.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f'mapping network file {source} holds a {type(state).__name__}, not '
                         f'a state dict (ClipCap saves `model.state_dict()`)')
    kept = {k[len(CLIPCAP_MAPPER_PREFIX):]: v for k, v in state.items()
            if k.startswith(CLIPCAP_MAPPER_PREFIX)}
    ignored = [k for k in state if k.startswith(CLIPCAP_GPT_PREFIX)]
    foreign = sorted(k for k in state if not k.startswith((CLIPCAP_MAPPER_PREFIX,
                                                           CLIPCAP_GPT_PREFIX)))
    own = mapper.state_dict()
    missing = sorted(CLIPCAP_MAPPER_PREFIX + k for k in set(own) - set(kept))
    unexpected = sorted(CLIPCAP_MAPPER_PREFIX + k for k in set(kept) - set(own)) + foreign
    wrong = sorted(k for k in set(own) & set(kept)
                   if tuple(own[k].shape) != tuple(kept[k].shape))
    if missing or unexpected or wrong:
        shapes = ', '.join(f'{CLIPCAP_MAPPER_PREFIX}{k}: file {tuple(kept[k].shape)} vs model '
                           f'{tuple(own[k].shape)}' for k in wrong)
        raise ValueError(
            f'mapping network file {source} does not match the configured '
            f'{mapper.mapping_type!r} mapper (embed_dim={mapper.embed_dim}, num_prefix='
            f'{mapper.num_prefix}, prefix_dim={mapper.prefix_dim}): missing keys '
            f'{_head(missing)}, unexpected keys {_head(unexpected)}, shape mismatches '
            f'[{shapes}] (a ClipCap file holds `clip_project.*` and `gpt.*` keys only)')
    mapper.load_state_dict(kept)
    print_log(f'prefix mapper: loaded {len(kept)} clip_project.* tensors from {source}; '
              f'ignored {len(ignored)} gpt.* tensors (GPT-2 is not part of the target)',
              logger='current', level=logging.INFO)
    return dict(kept=len(kept), ignored=len(ignored))


def _head(keys: list[str], n: int = 8) -> str:
    """At most `n` keys, then a count, so a whole GPT-2 state dict does not flood the error."""
    if len(keys) <= n:
        return str(keys)
    return f'{keys[:n]} and {len(keys) - n} more'


__all__ = [
    'CLIPCAP_GPT_PREFIX', 'CLIPCAP_MAPPER_PREFIX', 'MAPPING_TYPES', 'PrefixMappingNetwork',
    'TransformerPrefixMapper', 'build_prefix_mapper', 'clipcap_input_width',
    'clipcap_mapping_type', 'load_clipcap_mapper',
]
