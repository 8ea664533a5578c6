"""Models: backbones (the point-patch transformer), the distillation method (``distill``),
object classification and part segmentation, and 3DETR (``threedetr``)."""
from concept_distill.models import (  # noqa: F401
    backbones,
    classification,
    distill,
    part_segmentation,
    threedetr,
)
