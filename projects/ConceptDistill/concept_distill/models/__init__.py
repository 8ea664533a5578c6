"""Models: backbones (the point-patch transformer), the distillation method (``distill``) and
3DETR (``threedetr``)."""
from concept_distill.models import backbones, distill, threedetr  # noqa: F401
