"""Concept extraction interleaved with the 3DETR encoder's layers, as the source figure."""
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
    after the encoder has run is the same computation. Needs tokens with a ``layers`` list
    (``ThreeDETRTokenAdapter``) and ``num_layers`` equal to the encoder's layer count; other
    tokens fall back to :class:`ConceptExtractor` (all layers read the final tokens).
    """

    def forward(self, tokens: PointTokens) -> torch.Tensor:
        """Per-layer point tokens -> transformed concept tokens (B, K, out_dim)."""
        per_layer = getattr(tokens, 'layers', None)
        if not per_layer:
            return super().forward(tokens)
        if len(per_layer) != len(self.layers):
            raise ValueError(f'InterleavedConceptExtractor has {len(self.layers)} layers but '
                             f'the encoder gave {len(per_layer)}; set num_layers to the '
                             "encoder's num_layers")
        concepts = self.queries.unsqueeze(0).expand(tokens.feats.shape[0], -1, -1)
        for layer, (xyz, feats, mask) in zip(self.layers, per_layer):
            values = self.input_proj(feats)
            keys = values + self.encode_positions(xyz, mask) if self.pos_enc is not None \
                else values
            concepts = layer(concepts, keys, values, None if mask is None else ~mask)
        return self.mlp(self.norm_out(concepts))
