"""Token adapter for the point-patch transformer: its patch tokens after every block."""
from __future__ import annotations

from collections.abc import Sequence

from mmdet3d.registry import MODELS
from torch import nn

from concept_distill.models.distill.point_tokens import PointTokens
from concept_distill.models.distill.pointnet2_token_adapter import PointNet2TokenAdapter
from concept_distill.models.distill.threedetr_token_adapter import LayeredPointTokens


@MODELS.register_module()
class PointPatchTokenAdapter(PointNet2TokenAdapter):
    """Stack the batch's points, run ``PointPatchTransformer``, return its patch tokens.

    The final tokens (after the last block and the final norm) are the ``PointTokens``;
    ``.layers`` holds one ``PointTokens`` per selected block (all patches sit at the same
    centres in every block), so ``InterleavedConceptExtractor`` puts a concept layer next
    to every block, as in the source paper's figure. Batching (resampling clouds of unequal
    size, column selection) is the PointNet++ adapter's.

    Args:
        out_channels: the transformer's ``embed_dims``.
        use_dims: point columns fed to the backbone (None: all); their number must equal its
            ``in_channels`` (xyz only: ``[0, 1, 2]``).
        num_points: resample every cloud to this many points (None: to the smallest).
        layer_indices: blocks whose tokens go into ``.layers`` (None: every block; negative
            indices count from the end). A concept extractor with fewer layers than blocks
            reads e.g. every second block.
    """

    def __init__(self, out_channels: int = 384, use_dims: list[int] | None = None,
                 num_points: int | None = None,
                 layer_indices: Sequence[int] | None = None) -> None:
        super().__init__(out_channels=out_channels, level=-1, use_dims=use_dims,
                         num_points=num_points)
        self.layer_indices = None if layer_indices is None else list(layer_indices)

    def forward(self, backbone: nn.Module, batch_inputs_dict: dict,
                data_samples: list | None = None) -> LayeredPointTokens:
        """Points -> transformer -> final patch tokens, with per-block tokens in ``.layers``."""
        out = backbone(self.stack_points(batch_inputs_dict['points']))
        feats = out['features']
        if feats.shape[-1] != self.out_channels:
            raise ValueError(f'PointPatchTokenAdapter.out_channels={self.out_channels} but '
                             f'the backbone gives {feats.shape[-1]} channels')
        per_block = out['tokens']
        if self.layer_indices is not None:
            try:
                per_block = [per_block[i] for i in self.layer_indices]
            except IndexError:
                raise ValueError(f'PointPatchTokenAdapter.layer_indices={self.layer_indices} '
                                 f'but the backbone has {len(out["tokens"])} blocks') from None
        tokens = LayeredPointTokens(out['xyz'], feats, None).check()
        tokens.layers = [PointTokens(out['xyz'], f, None).check() for f in per_block]
        return tokens
