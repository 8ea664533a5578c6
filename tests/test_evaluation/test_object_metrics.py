"""Classification and part-segmentation metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from concept_distill.evaluation.classification_metric import (
    ObjectClassificationMetric,
    classification_accuracy,
)
from concept_distill.evaluation.part_seg_metric import (
    PartSegMetric,
    restrict_to_parts,
    shape_miou,
)


def _cls_sample(gt: int, pred: int, vote: int | None = None) -> dict:
    s = BaseDataElement(gt_label=torch.tensor([gt]), pred_label=torch.tensor([pred]))
    if vote is not None:
        s.pred_label_vote = torch.tensor([vote])
    return s.to_dict()  # what mmengine's Evaluator hands a metric


def test_overall_and_mean_class_accuracy_by_hand():
    # class 0: 3 of 4 right; class 1: 0 of 1; class 2: 1 of 1 -> OA 4/6, mAcc (0.75+0+1)/3
    gt = [0, 0, 0, 0, 1, 2]
    pred = [0, 0, 0, 2, 0, 2]
    out = classification_accuracy(np.array(gt), np.array(pred))
    assert out['overall_acc'] == pytest.approx(4 / 6)
    assert out['mean_class_acc'] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    # A class that is only predicted, never true, does not enter the mean.
    out = classification_accuracy(np.array([0, 0]), np.array([0, 5]))
    assert out == dict(overall_acc=0.5, mean_class_acc=0.5)


def test_voting_is_reported_beside_never_mixed():
    metric = ObjectClassificationMetric()
    metric.process({}, [_cls_sample(0, 0, 0), _cls_sample(1, 0, 1), _cls_sample(1, 1, 1),
                        _cls_sample(2, 1, 1)])
    out = metric.compute_metrics(metric.results)
    assert out['overall_acc'] == pytest.approx(2 / 4)
    assert out['mean_class_acc'] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out['overall_acc_vote'] == pytest.approx(3 / 4)
    assert out['mean_class_acc_vote'] == pytest.approx((1 + 1 + 0) / 3)
    plain = ObjectClassificationMetric()
    plain.process({}, [_cls_sample(0, 0), _cls_sample(1, 0)])
    assert set(plain.compute_metrics(plain.results)) == {'overall_acc', 'mean_class_acc'}
    mixed = ObjectClassificationMetric()
    mixed.process({}, [_cls_sample(0, 0, 0), _cls_sample(1, 0)])
    with pytest.raises(ValueError, match='1 of 2 samples carry a voted prediction'):
        mixed.compute_metrics(mixed.results)


def test_shape_miou_by_hand():
    gt = np.array([12, 12, 13, 13, 14, 14])
    pred = np.array([12, 13, 13, 13, 14, 12])
    # part 12: inter 1, union 3 -> 1/3; 13: inter 2, union 3 -> 2/3; 14: 1/2;
    # part 15 (Chair's 4th part) absent from both -> 1.
    assert shape_miou(pred, gt, [12, 13, 14, 15]) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 1) / 4)


def test_predictions_restricted_to_the_category_parts():
    # A mug (parts 36, 37): unrestricted argmax picks part 0 (an airplane part) on point 0.
    logits = np.full((3, 50), -5.0)
    logits[0, [0, 36, 37]] = [9.0, 1.0, 2.0]
    logits[1, [36, 37]] = [3.0, 1.0]
    logits[2, [12, 37]] = [8.0, 0.5]
    assert logits.argmax(1).tolist() == [0, 36, 12]
    assert restrict_to_parts(logits, [36, 37]).tolist() == [37, 36, 37]
    gt = torch.tensor([37, 36, 37])
    metric = PartSegMetric()
    with_logits = BaseDataElement(metainfo=dict(part_ids=[36, 37], category_name='Mug'),
                                  gt_part=gt, pred_part_logits=torch.from_numpy(logits))
    metric.process({}, [with_logits.to_dict()])
    assert metric.results == [(1.0, 'Mug')]


def test_instance_and_class_miou_by_hand():
    metric = PartSegMetric()
    samples = [  # (category, parts, gt, pred) -> shape mIoU
        ('Mug', [36, 37], [36, 36, 37, 37], [36, 36, 37, 37]),  # 1
        ('Mug', [36, 37], [36, 36, 37, 37], [36, 37, 37, 37]),  # (1/2 + 2/3) / 2 = 7/12
        ('Cap', [6, 7], [6, 6, 6, 7], [6, 6, 6, 6]),  # (3/4 + 0) / 2 = 3/8
    ]
    metric.process({}, [BaseDataElement(metainfo=dict(part_ids=p, category_name=c),
                                        gt_part=torch.tensor(g), pred_part=torch.tensor(q)
                                        ).to_dict() for c, p, g, q in samples])
    out = metric.compute_metrics(metric.results)
    assert out['instance_miou'] == pytest.approx((1 + 7 / 12 + 3 / 8) / 3)
    assert out['class_miou'] == pytest.approx(((1 + 7 / 12) / 2 + 3 / 8) / 2)
    assert out['miou/Mug'] == pytest.approx((1 + 7 / 12) / 2)
    assert out['miou/Cap'] == pytest.approx(3 / 8)
