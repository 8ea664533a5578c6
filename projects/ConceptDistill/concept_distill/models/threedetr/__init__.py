"""3DETR as mmdet3d components (registered on import); of the project it imports only
``models.backbones`` (the point-patch transformer as an alternative encoder), never the method."""
from concept_distill.models.threedetr.box_giou import axis_aligned_giou, rotated_giou
from concept_distill.models.threedetr.fourier_embedding import FourierPositionEmbedding3D
from concept_distill.models.threedetr.heading_coder import HeadingBinCoder
from concept_distill.models.threedetr.hungarian_matcher import HungarianMatcher3D
from concept_distill.models.threedetr.patch_transformer_encoder import (
    ThreeDETRPatchTransformerEncoder,
)
from concept_distill.models.threedetr.set_loss import ThreeDETRSetLoss
from concept_distill.models.threedetr.threedetr import ThreeDETR
from concept_distill.models.threedetr.threedetr_decoder import ThreeDETRDecoder
from concept_distill.models.threedetr.threedetr_encoder import ThreeDETREncoder
from concept_distill.models.threedetr.threedetr_head import ThreeDETRHead

__all__ = [
    'FourierPositionEmbedding3D', 'HeadingBinCoder', 'HungarianMatcher3D', 'ThreeDETR',
    'ThreeDETRDecoder', 'ThreeDETREncoder', 'ThreeDETRHead', 'ThreeDETRPatchTransformerEncoder',
    'ThreeDETRSetLoss',
    'axis_aligned_giou', 'rotated_giou',
]
