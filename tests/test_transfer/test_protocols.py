"""Transfer protocols: stratified label subsets, the linear probe, weight digests, BatchNorm
recalibration after fine-tuning."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from concept_distill.transfer.benchmark import check_goal
from concept_distill.transfer.protocols import (
    build_classifier,
    finetune,
    label_subset,
    linear_probe,
    recalibrate_batchnorm,
    state_digest,
)

TINY = dict(type='PointPatchTransformer', in_channels=3, num_groups=8, group_size=8,
            embed_dims=32, depth=1, num_heads=2, patch_hidden_channels=(16, 32),
            patch_fuse_channels=32, drop_path_rate=0.0)


def test_label_subset_keeps_one_per_class_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 10, 3])
    one = label_subset(labels, 0.01, seed=0)
    assert sorted(labels[one].tolist()) == [0, 1, 2, 3]  # max(1, round(1% of n)) per class
    ten = label_subset(labels, 0.1, seed=0)
    assert np.bincount(labels[ten]).tolist() == [5, 3, 1, 1]
    assert np.array_equal(ten, label_subset(labels, 0.1, seed=0))
    assert not np.array_equal(ten, label_subset(labels, 0.1, seed=1))
    assert len(label_subset(labels, 1.0, seed=3)) == len(labels)
    with pytest.raises(ValueError, match='fraction'):
        label_subset(labels, 0.0, seed=0)


def test_linear_probe_separates_separable_features() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 8)) + 5 * np.eye(3, 8)[y]
    assert linear_probe(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    noise = rng.normal(size=(60, 8))
    assert linear_probe(noise[::2], y[::2], noise[1::2], y[1::2]) < 0.7
    with pytest.raises(ValueError, match='2 classes'):
        linear_probe(x[:5], np.zeros(5, int), x, y)


def test_classifier_loads_a_backbone_state_and_digests_differ() -> None:
    a = build_classifier(TINY, 3, seed=0)
    b = build_classifier(TINY, 3, seed=1)
    assert state_digest(a.backbone.state_dict()) != state_digest(b.backbone.state_dict())
    c = build_classifier(TINY, 3, seed=1, backbone_state=a.backbone.state_dict())
    assert state_digest(c.backbone.state_dict()) == state_digest(a.backbone.state_dict())
    with pytest.raises(RuntimeError, match='Missing'):
        build_classifier(TINY, 3, seed=0, backbone_state={'norm.weight': torch.ones(32)})


def test_goal_check_reads_the_cells() -> None:
    def row(backbone, protocol, f, mean, std):
        return dict(backbone=backbone, protocol=protocol, label_fraction=f, mean=mean, std=std)

    rows = [row('pretrained', 'linear_probe', 1.0, 0.8, 0.01),
            row('scratch', 'linear_probe', 1.0, 0.5, 0.02),
            row('teacher', 'linear_probe', 1.0, 0.9, 0.0),
            row('pretrained', 'finetune', 0.01, 0.5, 0.1),
            row('scratch', 'finetune', 0.01, 0.45, 0.1)]
    goal = check_goal(rows)
    assert goal['linear_probe@1']['met'] and not goal['finetune@0.01']['met']
    assert goal['finetune@0.1'] is None
    assert goal['gap_closed']['fraction'] == pytest.approx(0.75)


def test_classifier_builds_outside_an_mmdet3d_scope() -> None:
    """A fresh process (as tools/transfer.py runs) has no default scope set by the tests."""
    code = ('from concept_distill.transfer.protocols import build_classifier\n'
            f'm = build_classifier({TINY!r}, 3, seed=0)\n'
            'print(type(m.data_preprocessor).__name__)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 'ObjectDataPreprocessor'


def test_batchnorm_recalibration_gives_the_training_clouds_statistics() -> None:
    """Stale running statistics are replaced by the averaged batch statistics of the final
    weights' eval-mode activations on the training clouds; momentum and eval mode return."""
    torch.manual_seed(0)
    model = build_classifier(TINY, 3, seed=0)
    points = torch.randn(12, 64, 3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) >= 2  # the patch embedding's and the head's
    for bn in bns:
        bn.running_mean.fill_(50.0)
        bn.running_var.fill_(1e-4)
    recalibrate_batchnorm(model, points, batch_size=4)
    assert not model.training and all(bn.momentum == 0.1 for bn in bns)
    head_bn = model.head[1]
    with torch.no_grad():
        pre_bn = model.head[0](model.extract_feat(points))  # eval mode: running statistics
    batches = pre_bn.split(4)
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(head_bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(head_bn.running_var, var, rtol=1e-4, atol=1e-6)
    assert all(bn.num_batches_tracked.item() == 3 for bn in bns)
    assert all(float(bn.running_mean.abs().max()) < 50 for bn in bns)


def test_finetune_depends_on_its_seed_only() -> None:
    """Dropout draws come from the seed, not from whatever used the global RNG before."""
    points = torch.randn(6, 64, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])

    def run(seed: int, disturb: int) -> dict:
        torch.manual_seed(disturb)
        torch.rand(disturb + 1)
        model = build_classifier(TINY, 3, seed=0, dropout=0.5)
        losses = finetune(model, points, labels, seed, steps=3, batch_size=4)
        return dict(losses=losses, state=model.state_dict())

    a, b, c = run(0, 1), run(0, 99), run(1, 1)
    assert a['losses'] == b['losses']
    assert all(torch.equal(a['state'][k], b['state'][k]) for k in a['state'])
    assert a['losses'] != c['losses']
