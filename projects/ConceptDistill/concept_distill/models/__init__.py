"""Models: the distillation method (``distill``) and 3DETR (``threedetr``)."""
from concept_distill.models import distill, threedetr  # noqa: F401
