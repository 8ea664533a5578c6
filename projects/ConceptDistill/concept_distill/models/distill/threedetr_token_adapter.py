"""Token adapter for the 3DETR encoder: its output tokens, and each layer's, for distillation."""
from __future__ import annotations

from mmdet3d.registry import MODELS
from torch import nn

from concept_distill.models.distill.point_tokens import PointTokens
from concept_distill.models.distill.pointnet2_token_adapter import PointNet2TokenAdapter


class LayeredPointTokens(PointTokens):
    """``PointTokens`` of the encoder's last layer that also carry every layer's tokens.

    ``layers`` is a list of ``PointTokens``, one per transformer layer, in order. Extractors
    that do not know about it see plain ``PointTokens``.
    """

    layers: list[PointTokens]


@MODELS.register_module()
class ThreeDETRTokenAdapter(PointNet2TokenAdapter):
    """Stack the batch's points, run ``ThreeDETREncoder``, return its tokens.

    Batching (resampling clouds of unequal size, column selection) is the PointNet++
    adapter's; only the read-out differs.

    Args:
        out_channels: the encoder's ``embed_dims``.
        use_dims: point columns fed to the encoder (None: all); their number must equal the
            encoder's ``in_channels`` (3DETR uses xyz: ``[0, 1, 2]``).
        num_points: resample every cloud to this many points (None: to the smallest).
    """

    def __init__(self, out_channels: int = 256, use_dims: list[int] | None = None,
                 num_points: int | None = None) -> None:
        super().__init__(out_channels=out_channels, level=-1, use_dims=use_dims,
                         num_points=num_points)

    def forward(self, backbone: nn.Module, batch_inputs_dict: dict,
                data_samples: list | None = None) -> LayeredPointTokens:
        """Points -> encoder -> final tokens, with per-layer tokens in ``.layers``."""
        out = backbone(self.stack_points(batch_inputs_dict['points']))
        feats = out['features']
        if feats.shape[-1] != self.out_channels:
            raise ValueError(f'ThreeDETRTokenAdapter.out_channels={self.out_channels} but the '
                             f'encoder gives {feats.shape[-1]} channels')
        tokens = LayeredPointTokens(out['xyz'], feats, None).check()
        tokens.layers = [PointTokens(x, f, None).check()
                         for x, f in zip(out['layer_xyz'], out['layer_features'])]
        return tokens
