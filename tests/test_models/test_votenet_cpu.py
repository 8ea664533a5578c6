"""mmdet3d's own, unmodified VoteNet ScanNet config trains a step and predicts on CPU tensors.

Runs on the real ScanNet scene of ../shared/fixtures/real with the CPU point operators that
`concept_distill` installs (without them the first forward fails on `torch.cuda.IntTensor`).
"""
from __future__ import annotations

from pathlib import Path

import mmdet3d
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

VOTENET_CONFIG = Path(mmdet3d.__file__).parent / '.mim' / 'configs' / 'votenet' / \
    'votenet_8xb8_scannet-3d.py'


def _scene_points(fixtures_root: Path, num_points: int, seed: int) -> torch.Tensor:
    """x, y, z, height as VoteNet's pipeline makes them (LoadPointsFromFile + PointSample)."""
    raw = np.fromfile(fixtures_root / 'scannet' / 'scene0000_00.bin', dtype=np.float32)
    xyz = raw.reshape(-1, 6)[:, :3]
    height = xyz[:, 2] - np.percentile(xyz[:, 2], 0.99)  # shift_height=True
    points = np.concatenate([xyz, height[:, None]], 1)
    keep = np.random.default_rng(seed).choice(len(points), num_points,
                                              replace=len(points) < num_points)
    return torch.from_numpy(points[keep])


def _fake_ground_truth(points: torch.Tensor, seed: int):
    """Three boxes around scene points; instance/semantic masks from the points in them."""
    from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample, PointData

    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), 3, replace=False), :3]
    sizes = torch.tensor([[1.0, 0.8, 0.9], [0.6, 0.6, 0.7], [1.5, 1.8, 1.2]])
    bottom = torch.cat([centres[:, :2], centres[:, 2:] - sizes[:, 2:] / 2], 1)
    boxes = DepthInstance3DBoxes(torch.cat([bottom, sizes], 1), box_dim=6, with_yaw=False)
    labels = torch.tensor([2, 4, 7])
    # points_in_boxes_part runs the CPU kernel; -1 (background) -> an unannotated class.
    in_box = boxes.points_in_boxes_part(points[:, :3]).long()
    assert (in_box >= 0).any(), 'fake boxes must hold points for the vote targets'
    semantic = torch.where(in_box >= 0, labels[in_box.clamp(min=0)], torch.tensor(18))
    sample = Det3DDataSample(metainfo=dict(box_type_3d=DepthInstance3DBoxes))
    sample.gt_instances_3d = InstanceData(bboxes_3d=boxes, labels_3d=labels)
    sample.gt_pts_seg = PointData(pts_semantic_mask=semantic, pts_instance_mask=in_box + 1)
    return sample


@pytest.fixture(scope='module')
def votenet() -> torch.nn.Module:
    from mmdet3d.registry import MODELS

    assert VOTENET_CONFIG.is_file(), VOTENET_CONFIG
    cfg = Config.fromfile(str(VOTENET_CONFIG))
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def test_votenet_train_step_on_cpu(votenet: torch.nn.Module, fixtures_root: Path) -> None:
    votenet.train()
    points = [_scene_points(fixtures_root, 20000, seed) for seed in (0, 1)]  # batch 2
    samples = [_fake_ground_truth(p, seed) for seed, p in enumerate(points)]
    losses = votenet.loss({'points': points}, samples)
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    assert {'vote_loss', 'objectness_loss', 'center_loss'} <= set(losses)
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
    assert total > 0
    votenet.zero_grad()
    total.backward()
    first_conv = next(votenet.backbone.parameters())
    assert first_conv.grad is not None and torch.isfinite(first_conv.grad).all()
    assert first_conv.grad.abs().sum() > 0  # gradients flowed back through the grouping ops


def test_votenet_predict_on_cpu(votenet: torch.nn.Module, fixtures_root: Path) -> None:
    from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample

    votenet.eval()
    points = _scene_points(fixtures_root, 40000, seed=2)  # VoteNet's test-time PointSample
    sample = Det3DDataSample(metainfo=dict(box_type_3d=DepthInstance3DBoxes))
    with torch.no_grad():
        (result,) = votenet.predict({'points': [points]}, [sample])
    pred = result.pred_instances_3d
    assert isinstance(pred.bboxes_3d, DepthInstance3DBoxes)
    assert len(pred.bboxes_3d) > 0
    assert torch.isfinite(pred.bboxes_3d.tensor).all()
    assert ((pred.scores_3d >= 0) & (pred.scores_3d <= 1)).all()
    assert ((pred.labels_3d >= 0) & (pred.labels_3d < 18)).all()
    # The proposals come from seeds on the scene: their centres lie near its points.
    centres = pred.bboxes_3d.gravity_center
    assert torch.cdist(centres, points[:, :3]).min(1).values.max() < 2.0
