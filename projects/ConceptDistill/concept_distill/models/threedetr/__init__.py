"""3DETR as mmdet3d components (registered on import)."""
from .box_giou import axis_aligned_giou, rotated_giou
from .fourier_embedding import FourierPositionEmbedding3D
from .heading_coder import HeadingBinCoder
from .hungarian_matcher import HungarianMatcher3D
from .interleaved_concept_extractor import InterleavedConceptExtractor
from .random_cuboid import RandomCuboid3D
from .set_loss import ThreeDETRSetLoss
from .threedetr import ThreeDETR
from .threedetr_decoder import ThreeDETRDecoder
from .threedetr_encoder import ThreeDETREncoder
from .threedetr_head import ThreeDETRHead
from .threedetr_token_adapter import LayeredPointTokens, ThreeDETRTokenAdapter

__all__ = [
    'FourierPositionEmbedding3D', 'HeadingBinCoder', 'HungarianMatcher3D',
    'InterleavedConceptExtractor', 'LayeredPointTokens', 'RandomCuboid3D', 'ThreeDETR',
    'ThreeDETRDecoder', 'ThreeDETREncoder', 'ThreeDETRHead', 'ThreeDETRSetLoss',
    'ThreeDETRTokenAdapter', 'axis_aligned_giou', 'rotated_giou'
]
