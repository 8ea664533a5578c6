"""The paper's point-patch transformer as 3DETR's encoder (ACT / MaskPoint's ScanNet transfer)."""
from __future__ import annotations

from mmdet3d.registry import MODELS
from torch import Tensor

from concept_distill.models.backbones import PointPatchTransformer


@MODELS.register_module()
class ThreeDETRPatchTransformerEncoder(PointPatchTransformer):
    """``PointPatchTransformer`` with ``ThreeDETREncoder``'s output, so 3DETR's head reads it.

    A subclass, not a wrapper holding the transformer: its state-dict keys are exactly
    ``PointPatchTransformer``'s (``patch_embed.*``, ``pos_embed.*``, ``blocks.{i}.*``,
    ``norm.*``), so a pre-training export loads with ``init_cfg=dict(type='Pretrained',
    checkpoint=..., prefix='backbone.')`` and zero missing / unexpected keys. It adds no
    parameters: the patch tokens (width ``embed_dims``) reach the decoder width through
    ``ThreeDETRHead``'s encoder-to-decoder projection (set ``bbox_head.in_channels`` to
    ``embed_dims``). The decoder's memory is the patch centres (``xyz``) and the tokens after
    the last block and final norm (``features``); 3DETR's queries are FPS-sampled among the
    centres. Arguments are ``PointPatchTransformer``'s.
    """

    def forward(self, points: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """points (B, N, in_channels) -> ``ThreeDETREncoder``'s dict.

        ``xyz`` (B, G, 3) patch centres, ``features`` (B, G, C) final tokens, ``indices``
        (B, G) long rows of ``points`` the centres sit on, and per-block ``layer_xyz`` /
        ``layer_features`` (every block's tokens sit on the same centres).
        """
        out = super().forward(points)
        return dict(xyz=out['xyz'], features=out['features'], indices=out['center_idx'],
                    layer_xyz=[out['xyz']] * len(out['tokens']),
                    layer_features=list(out['tokens']))
