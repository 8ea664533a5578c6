"""Concept extraction interleaved with a transformer encoder's layers, as the source figure."""
from __future__ import annotations

import torch
from mmdet3d.registry import MODELS

from concept_distill.models.distill.concept_extractor import ConceptExtractor
from concept_distill.models.distill.point_tokens import PointTokens


@MODELS.register_module()
class InterleavedConceptExtractor(ConceptExtractor):
    """Concept layer ``i`` cross-attends to the point tokens of encoder layer ``i``.

    The source paper's figure repeats a concept-extraction block per encoder layer: the
    point stream runs self-attention + FFN, the concept queries cross-attend to that layer's
    point features. Concepts never flow back into the point stream, so reading the layers
    after the encoder has run is the same computation. Serves any encoder whose token adapter
    returns ``LayeredPointTokens`` (a ``layers`` list of per-layer ``PointTokens``: the
    point-patch transformer's ``PointPatchTokenAdapter``, the 3DETR encoder's
    ``ThreeDETRTokenAdapter``); ``num_layers`` must equal the number of layers exposed. Each
    layer may have its own token positions, count and mask. Other tokens fall back to
    :class:`ConceptExtractor` (all layers read the final tokens).
    """

    def forward(self, tokens: PointTokens, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-layer point tokens -> transformed concept tokens (B, K, out_dim); with
        ``return_attention`` also each layer's cross-attention maps, as the base class."""
        per_layer = getattr(tokens, 'layers', None)
        if not per_layer:
            return super().forward(tokens, return_attention)
        if len(per_layer) != len(self.layers):
            raise ValueError(f'InterleavedConceptExtractor has {len(self.layers)} layers but '
                             f'the encoder gave {len(per_layer)}; set num_layers to the '
                             "encoder's num_layers")
        concepts = self.queries.unsqueeze(0).expand(tokens.feats.shape[0], -1, -1)
        maps = []
        for layer, (xyz, feats, mask) in zip(self.layers, per_layer):
            values = self.input_proj(feats)
            keys = values + self.encode_positions(xyz, mask) if self.pos_enc is not None \
                else values
            step = layer(concepts, keys, values, None if mask is None else ~mask,
                         return_attention)
            concepts = step[0] if return_attention else step
            if return_attention:
                maps.append(step[1])
        out = self.mlp(self.norm_out(concepts))
        return (out, maps) if return_attention else out
