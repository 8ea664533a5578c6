"""ShapeNetPart metrics: instance and class mIoU over the parts of each shape's category."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric


def restrict_to_parts(logits: np.ndarray, part_ids: Sequence[int]) -> np.ndarray:
    """Per-point argmax of (N, P) logits over the columns `part_ids` only (global ids)."""
    part_ids = np.asarray(part_ids, np.int64)
    return part_ids[np.asarray(logits)[:, part_ids].argmax(axis=1)]


def shape_miou(pred: np.ndarray, gt: np.ndarray, part_ids: Sequence[int]) -> float:
    """Mean over the category's parts of IoU(pred == p, gt == p); a part absent from both
    prediction and ground truth counts as IoU 1 (the ShapeNetPart convention)."""
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ')
    ious = []
    for p in part_ids:
        inter = np.sum((pred == p) & (gt == p))
        union = np.sum((pred == p) | (gt == p))
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(ious))


def part_seg_summary(shape_ious: Sequence[float], categories: Sequence[str]) -> dict:
    """instance_miou: mean over shapes; class_miou: mean over categories of their shapes'
    mean; plus each category's mean under its name."""
    by_cat: dict[str, list[float]] = defaultdict(list)
    for iou, cat in zip(shape_ious, categories):
        by_cat[cat].append(iou)
    per_cat = {c: float(np.mean(v)) for c, v in by_cat.items()}
    return dict(instance_miou=float(np.mean(shape_ious)),
                class_miou=float(np.mean(list(per_cat.values()))), per_category=per_cat)


def _np(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@METRICS.register_module()
class PartSegMetric(BaseMetric):
    """`instance_miou`, `class_miou` and `miou/<category>` of ShapeNetPart-style predictions.

    Per shape, the prediction is restricted to the parts of its category (`part_ids` of the
    data sample): from `pred_part_logits` (N, num_parts) when the model stores them, else
    `pred_part` must already be restricted (the segmentor's predict does it) and any point
    predicted outside the category counts as a miss of its true part.
    """

    def __init__(self, per_category: bool = True, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.per_category = per_category

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Per-shape mIoU and category (no per-point arrays are kept)."""
        for s in data_samples:
            part_ids = list(s['part_ids'])
            gt = _np(s['gt_part'])
            if 'pred_part_logits' in s:
                pred = restrict_to_parts(_np(s['pred_part_logits']), part_ids)
            else:
                pred = _np(s['pred_part'])
            cat = s.get('category_name', s.get('category'))
            self.results.append((shape_miou(pred, gt, part_ids), str(cat)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Instance / class mIoU (and per category)."""
        summary = part_seg_summary([r[0] for r in results], [r[1] for r in results])
        out = dict(instance_miou=summary['instance_miou'], class_miou=summary['class_miou'])
        if self.per_category:
            out.update({f'miou/{c}': v for c, v in sorted(summary['per_category'].items())})
        return out
