"""One-to-one assignment of 3DETR queries to ground-truth boxes (Hungarian algorithm)."""
import torch
from mmdet3d.registry import MODELS
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@MODELS.register_module()
class HungarianMatcher3D:
    """Minimise a weighted sum of class, objectness, centre-distance and GIoU costs.

    cost[q, g] = - cls_cost * p_q(label_g) - objectness_cost * objectness_q
                 + center_cost * ||c_q - c_g||_1 - giou_cost * GIoU(q, g)

    Args:
        cls_cost, objectness_cost, center_cost, giou_cost: the cost weights
            (3DETR: ScanNet 1/0/0/2, SUN RGB-D 1/5/5/3).
    """

    def __init__(self, cls_cost: float = 1.0, objectness_cost: float = 0.0,
                 center_cost: float = 0.0, giou_cost: float = 2.0):
        self.cls_cost = cls_cost
        self.objectness_cost = objectness_cost
        self.center_cost = center_cost
        self.giou_cost = giou_cost

    @torch.no_grad()
    def cost_matrix(self, cls_prob: Tensor, objectness: Tensor, center_dist: Tensor,
                    giou: Tensor, gt_labels: Tensor) -> Tensor:
        """(Q, C) class probabilities, (Q,) objectness, (Q, G) distances and GIoU,
        (G,) labels -> (Q, G) cost."""
        cost = -self.cls_cost * cls_prob[:, gt_labels]
        cost = cost - self.objectness_cost * objectness[:, None]
        cost = cost + self.center_cost * center_dist - self.giou_cost * giou
        return cost

    @torch.no_grad()
    def __call__(self, cls_prob: Tensor, objectness: Tensor, center_dist: Tensor,
                 giou: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor]:
        """Return (query indices, gt indices), both (min(Q, G),) long, sorted by query."""
        num_gt = gt_labels.numel()
        device = cls_prob.device
        if num_gt == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty
        cost = self.cost_matrix(cls_prob, objectness, center_dist, giou, gt_labels)
        cost = torch.nan_to_num(cost.float(), nan=1e6, posinf=1e6, neginf=-1e6)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return (torch.as_tensor(rows, dtype=torch.long, device=device),
                torch.as_tensor(cols, dtype=torch.long, device=device))
