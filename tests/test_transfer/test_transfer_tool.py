"""tools/transfer.py end to end at a tiny size: held-out objects, an export, the random
render-architecture teacher; the table's structure and that scratch and pre-trained rows
ran different weights (no gain is asserted: a tiny run measures nothing)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from concept_distill.checkpoint.backbone_checkpoint import backbone_meta, save_backbone_checkpoint
from concept_distill.transfer.protocols import build_classifier, state_digest

BACKBONE = dict(type='PointPatchTransformer', in_channels=3, num_groups=8, group_size=8,
                embed_dims=32, depth=1, num_heads=2, patch_hidden_channels=(16, 32),
                patch_fuse_channels=32, drop_path_rate=0.0)
CLASSES = ('chair', 'table', 'bed')
FRACTIONS = (0.5, 1.0)
SEEDS = (0, 1, 2)


@pytest.fixture(scope='module')
def run(tmp_path_factory, import_tool) -> dict:
    """An export of seeded weights (as the export hook writes it), then the tool."""
    tmp = tmp_path_factory.mktemp('transfer_tool')
    torch.set_num_threads(1)
    model = build_classifier(BACKBONE, 3, seed=123)
    state = model.backbone.state_dict()
    export = tmp / 'backbone.pth'
    save_backbone_checkpoint(state, backbone_meta(BACKBONE, None, source_config='test'),
                             str(export))
    result = import_tool('transfer').main([
        '--out-dir', str(tmp / 'out'), '--export', str(export), '--teacher', 'random',
        '--classes', *CLASSES, '--num-per-class', '4', '--test-per-class', '2',
        '--num-views', '2', '--seeds', *map(str, SEEDS), '--fractions', *map(str, FRACTIONS),
        '--num-points', '256', '--finetune-steps', '2', '--batch-size', '4'])
    return dict(result=result, digest=state_digest(state), tmp=tmp)


def test_table_has_every_cell(run) -> None:
    rows = run['result']['rows']
    cells = {(r['backbone'], r['protocol'], r['label_fraction']) for r in rows}
    expected = {(b, p, f) for b in ('pretrained', 'scratch')
                for p in ('linear_probe', 'finetune') for f in FRACTIONS}
    expected |= {('teacher', 'linear_probe', f) for f in FRACTIONS}
    assert cells == expected and len(rows) == len(expected)
    for r in rows:
        assert r['seeds'] == list(SEEDS) and len(r['values']) == len(SEEDS)
        assert all(0.0 <= v <= 1.0 for v in r['values'])
        assert r['mean'] == pytest.approx(sum(r['values']) / len(SEEDS))
        assert r['std'] >= 0.0 and r['teacher']
    full = next(r for r in rows if r['label_fraction'] == 1.0)
    assert full['num_labels'] == len(CLASSES) * 2  # 4 per class, 2 of them test objects
    teacher_rows = [r for r in rows if r['backbone'] == 'teacher']
    assert all(r['teacher'].startswith('random ViT-B-16') for r in teacher_rows)


def test_scratch_and_pretrained_rows_ran_different_weights(run) -> None:
    rows = run['result']['rows']
    pre = {w for r in rows if r['backbone'] == 'pretrained' for w in r['weights']}
    scratch = {w for r in rows if r['backbone'] == 'scratch' for w in r['weights']}
    assert pre == {run['digest']}  # every pre-trained run started from the export
    assert len(scratch) == len(SEEDS) and not scratch & pre  # one random init per seed


def test_markdown_and_json_are_written(run) -> None:
    md = Path(run['result']['table']).read_text()
    lines = md.splitlines()
    assert lines[0].startswith('| backbone | protocol | labels |')
    assert sum(line.startswith('| pretrained') for line in lines) == 4
    assert 'Goal:' in md
    data = json.loads(Path(run['result']['json']).read_text())
    assert data['meta']['classes'] == list(CLASSES)
    assert data['meta']['provenance']['downstream_data_seed'] == 3000
    assert set(data['goal']) >= {'linear_probe@1', 'gap_closed'}


def test_export_without_config_is_a_clear_error(run, import_tool, tmp_path) -> None:
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'backbone.norm.weight': torch.ones(2)}, 'meta': {}}, bad)
    root = next(run['tmp'].glob('out/downstream_seed*'))
    with pytest.raises(ValueError, match='backbone_cfg'):
        import_tool('transfer').main(['--out-dir', str(tmp_path / 'o'), '--export', str(bad),
                                      '--objects-root', str(root)])
