"""Generalised IoU of 3D boxes: differentiable axis-aligned form and exact rotated form."""
import torch
from mmdet3d.structures import DepthInstance3DBoxes
from torch import Tensor


def axis_aligned_giou(centers1: Tensor, sizes1: Tensor, centers2: Tensor, sizes2: Tensor,
                      eps: float = 1e-8) -> Tensor:
    """Pairwise GIoU of axis-aligned boxes given by centre and size.

    Args:
        centers1, sizes1: (..., K1, 3).
        centers2, sizes2: (..., K2, 3).

    Returns:
        (..., K1, K2) GIoU in [-1, 1]; differentiable in all inputs.
    """
    min1, max1 = centers1 - sizes1 / 2, centers1 + sizes1 / 2
    min2, max2 = centers2 - sizes2 / 2, centers2 + sizes2 / 2
    lo = torch.maximum(min1.unsqueeze(-2), min2.unsqueeze(-3))
    hi = torch.minimum(max1.unsqueeze(-2), max2.unsqueeze(-3))
    inter = (hi - lo).clamp(min=0).prod(-1)
    vol1 = sizes1.clamp(min=0).prod(-1).unsqueeze(-1)
    vol2 = sizes2.clamp(min=0).prod(-1).unsqueeze(-2)
    union = (vol1 + vol2 - inter).clamp(min=eps)
    enc_lo = torch.minimum(min1.unsqueeze(-2), min2.unsqueeze(-3))
    enc_hi = torch.maximum(max1.unsqueeze(-2), max2.unsqueeze(-3))
    enclosing = (enc_hi - enc_lo).clamp(min=0).prod(-1).clamp(min=eps)
    return inter / union - (enclosing - union) / enclosing


@torch.no_grad()
def rotated_giou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-8) -> Tensor:
    """Pairwise GIoU of yaw-rotated boxes (not differentiable; used for matching).

    Args:
        boxes1: (K1, 7) gravity centre, size, yaw in mmdet3d depth convention.
        boxes2: (K2, 7) same layout.

    Returns:
        (K1, K2) GIoU; the intersection is exact (rotated BEV overlap times height
        overlap) and the enclosing volume is the axis-aligned hull of both boxes' corners.
    """
    if boxes1.numel() == 0 or boxes2.numel() == 0:
        return boxes1.new_zeros(boxes1.shape[0], boxes2.shape[0])
    b1 = DepthInstance3DBoxes(boxes1.float(), origin=(0.5, 0.5, 0.5))
    b2 = DepthInstance3DBoxes(boxes2.float(), origin=(0.5, 0.5, 0.5))
    iou = DepthInstance3DBoxes.overlaps(b1, b2).to(boxes1.device)
    vol1 = b1.volume.view(-1, 1).to(iou)
    vol2 = b2.volume.view(1, -1).to(iou)
    # overlaps() returns inter / (v1 + v2 - inter); invert it for the union.
    union = ((vol1 + vol2) / (1 + iou)).clamp(min=eps)
    c1, c2 = b1.corners, b2.corners
    enc_lo = torch.minimum(c1.min(1)[0][:, None], c2.min(1)[0][None])
    enc_hi = torch.maximum(c1.max(1)[0][:, None], c2.max(1)[0][None])
    enclosing = (enc_hi - enc_lo).prod(-1).clamp(min=eps).to(iou)
    return (iou - (enclosing - union) / enclosing).to(boxes1.dtype)
