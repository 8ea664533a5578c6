"""A detection mAP that stays defined on a few evaluation scenes (classes present only)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def detection_summary(metrics: Mapping[str, float], iou: str) -> dict:
    """mAP over the classes present in the evaluated scenes, plus mmdet3d's own mean.

    mmdet3d's IndoorMetric reports NaN AP for a class with no ground truth in the evaluated
    scenes and then a NaN mAP; a few val scenes never hold all 18 ScanNet classes, so this
    averages over the classes that are present. Returns dict(map, classes (present),
    total (classes reported), raw (mmdet3d's ``mAP_<iou>``)).
    """
    suffix = f'_AP_{iou}'
    aps = {k[:-len(suffix)]: v for k, v in metrics.items() if k.endswith(suffix)}
    present = [v for v in aps.values() if v is not None and not math.isnan(v)]
    return dict(map=float(np.mean(present)) if present else float('nan'),
                classes=len(present), total=len(aps), raw=metrics.get(f'mAP_{iou}'))
