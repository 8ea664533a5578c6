"""Point-wise (1x1 conv) MLP builder shared by the 3DETR head."""
from collections.abc import Sequence

from torch import nn


def build_conv_mlp(in_channels: int,
                   hidden_channels: Sequence[int],
                   out_channels: int,
                   norm: bool = True,
                   dropout: float | None = None,
                   hidden_bias: bool = False,
                   out_bias: bool = True,
                   out_norm: bool = False,
                   out_act: bool = False) -> nn.Sequential:
    """Stack Conv1d(k=1) [+ BN1d] + ReLU [+ Dropout] layers over (B, C, N) features.

    Hidden convolutions have no bias by default because BN follows them.
    """
    layers: list[nn.Module] = []
    prev = in_channels
    for ch in hidden_channels:
        layers.append(nn.Conv1d(prev, ch, 1, bias=hidden_bias))
        if norm:
            layers.append(nn.BatchNorm1d(ch))
        layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        prev = ch
    layers.append(nn.Conv1d(prev, out_channels, 1, bias=out_bias))
    if out_norm:
        layers.append(nn.BatchNorm1d(out_channels))
    if out_act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
