"""The distillation method: CLIP teacher, prefix mapper, concept extractors, loss, distiller,
and the token adapters that expose each backbone's point tokens."""
from concept_distill.models.distill.clip_teacher import CLIPTeacher, file_sha256
from concept_distill.models.distill.concept_alignment_loss import (
    ConceptAlignmentLoss,
    pool_concepts,
)
from concept_distill.models.distill.concept_distiller import ConceptDistiller
from concept_distill.models.distill.concept_extractor import ConceptExtractor
from concept_distill.models.distill.interleaved_concept_extractor import (
    InterleavedConceptExtractor,
)
from concept_distill.models.distill.minkunet_token_adapter import MinkUNetTokenAdapter
from concept_distill.models.distill.point_patch_token_adapter import PointPatchTokenAdapter
from concept_distill.models.distill.point_tokens import BaseTokenAdapter, PointTokens
from concept_distill.models.distill.pointnet2_token_adapter import PointNet2TokenAdapter
from concept_distill.models.distill.position_encoding import (
    FourierPositionEncoding,
    LearnedPositionEncoding,
)
from concept_distill.models.distill.prefix_mapping import (
    MAPPING_TYPES,
    PrefixMappingNetwork,
    TransformerPrefixMapper,
    build_prefix_mapper,
    load_clipcap_mapper,
)
from concept_distill.models.distill.threedetr_token_adapter import (
    LayeredPointTokens,
    ThreeDETRTokenAdapter,
)

__all__ = [
    'BaseTokenAdapter', 'CLIPTeacher', 'ConceptAlignmentLoss', 'ConceptDistiller',
    'ConceptExtractor', 'FourierPositionEncoding', 'InterleavedConceptExtractor',
    'LayeredPointTokens', 'LearnedPositionEncoding', 'MAPPING_TYPES', 'MinkUNetTokenAdapter',
    'PointNet2TokenAdapter', 'PointPatchTokenAdapter', 'PointTokens', 'PrefixMappingNetwork',
    'ThreeDETRTokenAdapter', 'TransformerPrefixMapper',
    'build_prefix_mapper', 'file_sha256', 'load_clipcap_mapper', 'pool_concepts',
]
