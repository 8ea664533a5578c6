"""Models: the distillation method, 3DETR, and sparse-conv segmentation parts."""
from . import distill, segmentation, threedetr  # noqa: F401
