"""The distillation method: CLIP teacher, concept extractor, alignment loss, distiller."""
from .alignment_metrics import alignment_metrics
from .backbone_checkpoint import (
                                  BackboneCheckpointError,
                                  KeyReport,
                                  check_backbone_checkpoint,
                                  compare_backbone_keys,
                                  extract_backbone_state,
                                  save_backbone_checkpoint,
)
from .clip_teacher import CLIPTeacher, file_sha256
from .concept_alignment_loss import ConceptAlignmentLoss, pool_concepts
from .concept_distiller import ConceptDistiller
from .concept_extractor import ConceptExtractor
from .concept_retrieval_metric import ConceptRetrievalMetric
from .point_tokens import BaseTokenAdapter, PointTokens
from .pointnet2_token_adapter import PointNet2TokenAdapter
from .position_encoding import FourierPositionEncoding, LearnedPositionEncoding
from .prefix_mapping import PrefixMappingNetwork

__all__ = [
    'BackboneCheckpointError', 'BaseTokenAdapter', 'CLIPTeacher', 'ConceptAlignmentLoss',
    'ConceptDistiller', 'ConceptExtractor', 'ConceptRetrievalMetric', 'FourierPositionEncoding',
    'KeyReport', 'LearnedPositionEncoding', 'PointNet2TokenAdapter', 'PointTokens',
    'PrefixMappingNetwork', 'alignment_metrics', 'check_backbone_checkpoint',
    'compare_backbone_keys', 'extract_backbone_state', 'file_sha256', 'pool_concepts',
    'save_backbone_checkpoint'
]
