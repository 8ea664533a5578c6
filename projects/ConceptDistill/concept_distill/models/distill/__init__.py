"""The distillation method: CLIP teacher, concept extractor, alignment loss, distiller."""
from .clip_teacher import CLIPTeacher, file_sha256
from .prefix_mapping import PrefixMappingNetwork

__all__ = ['CLIPTeacher', 'PrefixMappingNetwork', 'file_sha256']
