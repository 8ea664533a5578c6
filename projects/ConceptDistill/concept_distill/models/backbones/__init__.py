"""Backbones of the project: the paper's point-patch transformer student."""
from concept_distill.models.backbones.patch_embedding import PatchEmbedding
from concept_distill.models.backbones.patch_grouping import (
    PatchGrouping,
    PointPatches,
    knn_indices,
    sample_centers,
)
from concept_distill.models.backbones.point_patch_transformer import (
    DropPath,
    PatchSelfAttention,
    PointPatchTransformer,
    TransformerBlock,
)

__all__ = [
    'DropPath', 'PatchEmbedding', 'PatchGrouping', 'PatchSelfAttention', 'PointPatches',
    'PointPatchTransformer', 'TransformerBlock', 'knn_indices', 'sample_centers',
]
