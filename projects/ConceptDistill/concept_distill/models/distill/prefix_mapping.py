"""Frozen ClipCap-style mapping network: CLIP image embedding -> K prefix tokens."""
from __future__ import annotations

import torch
from torch import nn

# ClipCap's released MLP mapper names its layers `clip_project.model.{0,2}`; accept those keys
# so a user's mapper file loads without conversion.
_CLIPCAP_KEYS = {
    'clip_project.model.0.weight': 'fc1.weight',
    'clip_project.model.0.bias': 'fc1.bias',
    'clip_project.model.2.weight': 'fc2.weight',
    'clip_project.model.2.bias': 'fc2.bias',
}


class PrefixMappingNetwork(nn.Module):
    """MLP (Linear-Tanh-Linear) mapping a (B, D) embedding to (B, K, prefix_dim) prefix tokens."""

    def __init__(self, embed_dim: int, num_prefix: int = 10, prefix_dim: int | None = None,
                 hidden_dim: int | None = None) -> None:
        super().__init__()
        self.num_prefix = num_prefix
        self.prefix_dim = prefix_dim or embed_dim
        out_dim = num_prefix * self.prefix_dim
        # ClipCap's MLP mapper uses a hidden width of half the output width.
        hidden_dim = hidden_dim or out_dim // 2
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Map embeddings (B, D) to prefix tokens (B, K, prefix_dim)."""
        out = self.fc2(self.act(self.fc1(embedding)))
        return out.view(embedding.shape[0], self.num_prefix, self.prefix_dim)

    def load_mapping_state(self, state: dict, source: str) -> None:
        """Load a plain state dict (ours or ClipCap's key names); errors name the file and keys."""
        if 'state_dict' in state and isinstance(state['state_dict'], dict):
            state = state['state_dict']
        state = {_CLIPCAP_KEYS.get(k, k): v for k, v in state.items()
                 if k in _CLIPCAP_KEYS or not k.startswith('clip_project.')}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            shapes = ', '.join(f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                               for k in wrong)
            raise ValueError(
                f'mapping network file {source} does not match the configured mapper '
                f'(embed_dim={self.fc1.in_features}, num_prefix={self.num_prefix}, '
                f'prefix_dim={self.prefix_dim}): missing keys {missing}, unexpected keys '
                f'{unexpected}, shape mismatches [{shapes}]')
        self.load_state_dict(state)
