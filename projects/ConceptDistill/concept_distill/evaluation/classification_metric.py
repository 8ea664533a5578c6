"""Object classification metrics: overall accuracy and mean class accuracy, voting apart."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric


def classification_accuracy(gt: np.ndarray, pred: np.ndarray,
                            num_classes: int | None = None) -> dict[str, float]:
    """Overall accuracy (correct / all) and mean class accuracy (the mean over the classes
    present in `gt` of each class's recall); fractions in [0, 1]."""
    gt, pred = np.asarray(gt, np.int64).ravel(), np.asarray(pred, np.int64).ravel()
    if gt.shape != pred.shape or gt.size == 0:
        raise ValueError(f'need equal non-empty label arrays, got {gt.shape} and {pred.shape}')
    n = int(max(gt.max(), pred.max()) + 1) if num_classes is None else num_classes
    correct = np.bincount(gt[gt == pred], minlength=n)
    total = np.bincount(gt, minlength=n)
    present = total > 0
    return dict(overall_acc=float((gt == pred).mean()),
                mean_class_acc=float((correct[present] / total[present]).mean()))


def _label(value) -> int:
    return int(value.item() if isinstance(value, torch.Tensor) else np.asarray(value).ravel()[0])


@METRICS.register_module()
class ObjectClassificationMetric(BaseMetric):
    """`overall_acc` and `mean_class_acc` of `pred_label`; when the model voted
    (`pred_label_vote`), `overall_acc_vote` and `mean_class_acc_vote` beside them. A run in
    which only some samples carry a vote is an error (the two are never mixed)."""

    def __init__(self, collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep (gt, pred, vote or None) per sample."""
        for s in data_samples:
            vote = s.get('pred_label_vote')
            self.results.append((_label(s['gt_label']), _label(s['pred_label']),
                                 None if vote is None else _label(vote)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Plain and (if present) voted accuracies."""
        gt = np.array([r[0] for r in results])
        out = classification_accuracy(gt, np.array([r[1] for r in results]))
        votes = [r[2] for r in results]
        has_vote = [v is not None for v in votes]
        if any(has_vote):
            if not all(has_vote):
                raise ValueError(f'{sum(has_vote)} of {len(votes)} samples carry a voted '
                                 'prediction: voting must cover the whole test set')
            voted = classification_accuracy(gt, np.array(votes))
            out.update({f'{k}_vote': v for k, v in voted.items()})
        return out
