"""The distillation method: CLIP teacher, concept extractor, alignment loss, distiller."""
from .clip_teacher import CLIPTeacher, file_sha256
from .point_tokens import BaseTokenAdapter, PointTokens
from .pointnet2_token_adapter import PointNet2TokenAdapter
from .prefix_mapping import PrefixMappingNetwork

__all__ = ['BaseTokenAdapter', 'CLIPTeacher', 'PointNet2TokenAdapter', 'PointTokens',
           'PrefixMappingNetwork', 'file_sha256']
