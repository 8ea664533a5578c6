"""3DETR's set loss for one decoder layer: Hungarian matching, then class/box losses."""
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from concept_distill.models.threedetr.box_giou import axis_aligned_giou, rotated_giou


@MODELS.register_module()
class ThreeDETRSetLoss(nn.Module):
    """Match queries to boxes, then weight the paper's losses.

    Box-level terms are summed over matched queries and divided by the number of
    ground-truth boxes (averaged over workers); the class term is a weighted mean over
    all queries, with the "no object" class (the last logit) down-weighted.

    Args:
        num_classes: object classes (without "no object").
        matcher: config of the assignment (``HungarianMatcher3D``).
        cls_weight, center_weight, size_weight, giou_weight, heading_cls_weight,
            heading_reg_weight: loss weights (a zero weight skips the term).
        no_object_weight: class weight of "no object" in the cross-entropy.
    """

    def __init__(self, num_classes: int, matcher: dict | None = None,
                 cls_weight: float = 1.0, no_object_weight: float = 0.25,
                 center_weight: float = 5.0, size_weight: float = 1.0,
                 giou_weight: float = 1.0, heading_cls_weight: float = 0.1,
                 heading_reg_weight: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = MODELS.build(matcher or dict(type='HungarianMatcher3D'))
        self.weights = dict(cls=cls_weight, center=center_weight, size=size_weight,
                            giou=giou_weight, heading_cls=heading_cls_weight,
                            heading_reg=heading_reg_weight)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = no_object_weight
        # Not persistent: it is configuration, and must not appear in checkpoints.
        self.register_buffer('class_weight', class_weight, persistent=False)

    @torch.no_grad()
    def match(self, preds: dict[str, Tensor], targets: dict[str, Tensor],
              giou: Tensor, center_dist: Tensor) -> tuple[Tensor, Tensor]:
        """Assign queries to ground truth.

        Returns:
            (B, Q) long index of each query's box (0 where unmatched) and (B, Q) float
            mask of matched queries.
        """
        prob = preds['cls_logits'].softmax(-1)
        cls_prob, objectness = prob[..., :-1], 1 - prob[..., -1]
        bsz, num_q = prob.shape[:2]
        gt_index = torch.zeros(bsz, num_q, dtype=torch.long, device=prob.device)
        matched = torch.zeros(bsz, num_q, dtype=prob.dtype, device=prob.device)
        rotated = preds.get('heading_logits') is not None
        for b in range(bsz):
            n = int(targets['num_gt'][b])
            if n == 0:
                continue
            giou_b = giou[b, :, :n]
            if rotated and self.matcher.giou_cost:
                giou_b = rotated_giou(
                    torch.cat([preds['center'][b], preds['size'][b],
                               preds['yaw'][b, :, None]], -1),
                    torch.cat([targets['centers'][b, :n], targets['sizes'][b, :n],
                               targets['yaw'][b, :n, None]], -1))
            rows, cols = self.matcher(cls_prob[b], objectness[b], center_dist[b, :, :n],
                                      giou_b, targets['labels'][b, :n])
            gt_index[b, rows] = cols
            matched[b, rows] = 1
        return gt_index, matched

    def forward(self, preds: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Losses of one decoder layer.

        Args:
            preds: ``cls_logits`` (B, Q, C+1), ``center`` / ``center_norm`` / ``size`` /
                ``size_norm`` (B, Q, 3), ``yaw`` (B, Q), and ``heading_logits`` /
                ``heading_residual`` (B, Q, H) or None.
            targets: ``centers`` / ``centers_norm`` / ``sizes`` / ``sizes_norm`` (B, G, 3),
                ``labels`` / ``heading_cls`` (B, G) long, ``heading_res`` / ``yaw`` (B, G),
                ``num_gt`` (B,) and ``num_boxes`` (float, the normaliser); boxes of a
                sample are packed first, G >= 1.
        """
        giou = axis_aligned_giou(preds['center'], preds['size'], targets['centers'],
                                 targets['sizes'])
        center_dist = torch.cdist(preds['center_norm'], targets['centers_norm'], p=1)
        gt_index, matched = self.match(preds, targets, giou.detach(), center_dist.detach())
        num_boxes = targets['num_boxes']
        w = self.weights
        losses: dict[str, Tensor] = {}

        def per_query(t: Tensor) -> Tensor:
            """Gather a (B, G, ...) target for each query's assigned box."""
            idx = gt_index.view(*gt_index.shape, *([1] * (t.dim() - 2)))
            return t.gather(1, idx.expand(-1, -1, *t.shape[2:]))

        if w['cls']:
            cls_target = per_query(targets['labels'])
            cls_target = torch.where(matched.bool(), cls_target,
                                     torch.full_like(cls_target, self.num_classes))
            losses['loss_cls'] = w['cls'] * F.cross_entropy(
                preds['cls_logits'].flatten(0, 1), cls_target.flatten(),
                weight=self.class_weight.to(preds['cls_logits'].dtype))
        if w['center']:
            dist = center_dist.gather(2, gt_index[..., None]).squeeze(-1)
            losses['loss_center'] = w['center'] * (dist * matched).sum() / num_boxes
        if w['size']:
            l1 = (preds['size_norm'] - per_query(targets['sizes_norm'])).abs().sum(-1)
            losses['loss_size'] = w['size'] * (l1 * matched).sum() / num_boxes
        if w['giou']:
            g = giou.gather(2, gt_index[..., None]).squeeze(-1)
            losses['loss_giou'] = w['giou'] * ((1 - g) * matched).sum() / num_boxes
        if preds.get('heading_logits') is not None:
            heading_cls = per_query(targets['heading_cls'])
            if w['heading_cls']:
                ce = F.cross_entropy(preds['heading_logits'].transpose(1, 2), heading_cls,
                                     reduction='none')
                losses['loss_heading_cls'] = w['heading_cls'] * (ce * matched).sum() / num_boxes
            if w['heading_reg']:
                res = preds['heading_residual'].gather(2, heading_cls[..., None]).squeeze(-1)
                huber = F.huber_loss(res, per_query(targets['heading_res']), reduction='none',
                                     delta=1.0)
                losses['loss_heading_reg'] = (w['heading_reg'] * (huber * matched).sum()
                                              / num_boxes)
        return losses
