"""Predicted vs ground-truth 3D boxes, top-down, on one scene, for one or more detectors."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config

from concept_distill.visualization.pyplot import pyplot
from concept_distill.visualization.trained_model import build_trained_model


def box_footprint(box) -> np.ndarray:
    """Top-down footprint (5, 2) of one ``DepthInstance3DBoxes`` row, as a closed polygon."""
    corners = box.corners[0].numpy()  # (8, 3)
    bottom = corners[[0, 3, 7, 4, 0]] if corners.shape[0] == 8 else corners
    return bottom[:, :2]


def box_views_figure(cfg: Config, runs: Mapping[str, str], path: str | Path, index: int = 0,
                     score_thr: float = 0.3, top_k: int = 5, trusted: bool = False) -> Path:
    """One panel per ``{name: checkpoint}`` of ``cfg``'s detector on test sample ``index``:
    the points, the ground truth (green) and the predictions (red) scored above ``score_thr``
    or among the ``top_k`` best (``trusted``: see ``build_trained_model``)."""
    from mmdet3d.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    plt = pyplot()
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    sample = dataset[index]
    gt = dataset.get_ann_info(index)['gt_bboxes_3d']
    pts = sample['inputs']['points'].numpy()
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 6.5))
    for ax, (name, checkpoint) in zip(np.atleast_1d(axes), runs.items()):
        model = build_trained_model(cfg.model, checkpoint, trusted=trusted)
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([sample]))[0].pred_instances_3d
        # Short runs score few boxes above the threshold: show at least the best few.
        order = pred.scores_3d.argsort(descending=True)
        keep = torch.zeros_like(pred.scores_3d, dtype=torch.bool)
        keep[order[:top_k]] = True
        keep |= pred.scores_3d > score_thr
        ax.scatter(pts[:, 0], pts[:, 1], s=0.3, c='0.7')
        for i in range(len(gt)):
            poly = box_footprint(gt[i])
            ax.plot(poly[:, 0], poly[:, 1], 'g-', lw=2, label='ground truth' if i == 0 else None)
        boxes = pred.bboxes_3d[keep]
        for i in range(len(boxes)):
            poly = box_footprint(boxes[i])
            ax.plot(poly[:, 0], poly[:, 1], 'r--', lw=1.2,
                    label=f'predicted (score > {score_thr} or top {top_k})' if i == 0 else None)
        best = float(pred.scores_3d.max()) if len(pred.scores_3d) else float('nan')
        ax.set_title(f'{name}: {int((pred.scores_3d > score_thr).sum())} boxes scored > '
                     f'{score_thr}; best score {best:.2f}')
        ax.set_aspect('equal')
        ax.legend(loc='upper right')
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
