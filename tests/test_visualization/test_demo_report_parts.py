"""The demo report's parts, as package functions: the scalar-log readers, the detection
summary, the concept-attention read-out and figures."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from concept_distill.evaluation.detection_summary import detection_summary
from concept_distill.evaluation.scalar_logs import final_record_with, read_scalars, series
from concept_distill.models.distill import ConceptExtractor, PointTokens
from concept_distill.visualization.concept_attention import (
    concept_attention,
    plot_concept_attention,
)
from concept_distill.visualization.training_curves import plot_training_curves

PNG = b'\x89PNG\r\n\x1a\n'


def test_scalar_logs(tmp_path):
    records = [dict(step=1, lr=0.1, loss=3.0), dict(step=2, lr=0.1, loss=2.0),
               {'step': 2, 'align/top1': 0.5}, dict(step=3, lr=0.1, loss=1.5),
               {'step': 3, 'align/top1': 0.75}]
    old, new = tmp_path / 'run1' / 'vis_data', tmp_path / 'run2' / 'vis_data'
    for d in (old, new):
        d.mkdir(parents=True)
    (old / 'scalars.json').write_text(json.dumps(dict(step=1, lr=1, loss=9.0)) + '\n')
    (new / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records) + '\n')
    assert read_scalars(tmp_path) == records  # the newest run's
    assert series(records, 'loss') == ([1, 2, 3], [3.0, 2.0, 1.5])
    assert series(records, 'align/top1') == ([], [])  # evaluation records are not training
    assert final_record_with(records, 'align/top1')['align/top1'] == 0.75
    with pytest.raises(KeyError, match='mAP'):
        final_record_with(records, 'mAP_0.25')
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        read_scalars(tmp_path / 'run1' / 'vis_data')


def test_detection_summary_averages_present_classes():
    metrics = {'chair_AP_0.25': 0.5, 'table_AP_0.25': 0.25, 'bed_AP_0.25': float('nan'),
               'chair_AP_0.50': 0.1, 'mAP_0.25': float('nan'), 'mAP_0.50': 0.1}
    s = detection_summary(metrics, '0.25')
    assert s['map'] == pytest.approx(0.375) and (s['classes'], s['total']) == (2, 3)
    assert math.isnan(s['raw'])
    assert detection_summary(metrics, '0.50') == dict(map=0.1, classes=1, total=1, raw=0.1)
    assert math.isnan(detection_summary({}, '0.25')['map'])


class _Tokens(torch.nn.Module):
    """Stands for a token adapter: fixed tokens, the last two of the cloud padded."""

    def forward(self, backbone, inputs, data_samples) -> PointTokens:
        g = torch.Generator().manual_seed(0)
        mask = torch.ones(1, 12, dtype=torch.bool)
        mask[:, -2:] = False
        return PointTokens(torch.rand(1, 12, 3, generator=g) * 4,
                           torch.randn(1, 12, 16, generator=g), mask)


def test_concept_attention_reads_the_extractor_api(tmp_path):
    torch.manual_seed(0)
    model = SimpleNamespace(
        data_preprocessor=lambda batch, training: dict(inputs=batch['inputs'],
                                                       data_samples=batch['data_samples']),
        backbone=None, token_adapter=_Tokens(),
        concept_extractor=ConceptExtractor(in_channels=16, out_dim=8, num_concepts=5,
                                           embed_dims=32, num_heads=4).eval())
    xyz, weights = concept_attention(model, dict(inputs={}, data_samples=None))
    assert xyz.shape == (10, 3) and weights.shape == (5, 10)  # padded tokens dropped
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    _, first = concept_attention(model, dict(inputs={}, data_samples=None), layer=0)
    assert not np.allclose(first, weights)

    path = plot_concept_attention(xyz, weights, tmp_path / 'concepts.png', title='frame 0')
    assert path.read_bytes()[:8] == PNG


def test_training_curves_figure(tmp_path):
    pre = [dict(step=i, lr=0.1, loss=3.0 / i, align_cos=0.1 * i) for i in range(1, 5)]
    vn = [dict(step=i, lr=0.1, loss=10.0 / i) for i in range(1, 5)]
    path = plot_training_curves(pre, vn, vn, tmp_path / 'curves.png')
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
