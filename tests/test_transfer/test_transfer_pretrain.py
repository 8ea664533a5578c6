"""tools/transfer.py with --pretrain-config: it makes its own pre-training objects, caches the
teacher's features, pre-trains through tools/train.py, exports, and benchmarks that export
on other instances (tiny sizes: the path, not a gain)."""
from __future__ import annotations

import json

import pytest
import torch

from concept_distill.transfer.benchmark import load_export

CONFIG = 'configs/demo/pretrain_ppt_objects_synthetic.py'
CLASSES = ('chair', 'table')


@pytest.mark.slow
def test_pretrain_then_benchmark_end_to_end(tmp_path, import_tool) -> None:
    out = tmp_path / 'out'
    result = import_tool('transfer').main([
        '--out-dir', str(out), '--pretrain-config', CONFIG, '--teacher', 'random',
        '--pretrain-iters', '2', '--pretrain-num-per-class', '3', '--pretrain-data-seed', '11',
        '--classes', *CLASSES, '--num-per-class', '3', '--test-per-class', '1',
        '--data-seed', '12', '--num-views', '1', '--seeds', '0', '1', '--fractions', '1',
        '--num-points', '256', '--finetune-steps', '2', '--batch-size', '4'])
    meta = result['meta']
    run = meta['provenance']['pretrain']
    assert run['iters'] == 2 and run['data_seed'] == 11 and run['classes'] == list(CLASSES)
    assert meta['provenance']['downstream_data_seed'] == 12

    # The export the benchmark read is the run's, and it is not a fresh initialisation.
    cfg, state, export_meta = load_export(run['export'])
    assert meta['export'] == str((out / 'pretrain' / 'run' / 'backbone_latest.pth').resolve())
    assert cfg['embed_dims'] == 128 and cfg['depth'] == 4
    assert export_meta['teacher']['weights_digest'].startswith('random-init')
    pre = {w for r in result['rows'] if r['backbone'] == 'pretrained' for w in r['weights']}
    scratch = {w for r in result['rows'] if r['backbone'] == 'scratch' for w in r['weights']}
    assert len(pre) == 1 and len(scratch) == 2 and pre.isdisjoint(scratch)

    # Pre-training and evaluation objects are different instances (the folders of both are
    # named class_NNNN; the data seed makes them other objects): no view is shared.
    pre_root = out / 'pretrain' / 'objects_seed11' / 'ShapeNet55' / 'shapenet_views'
    eval_root = out / 'downstream_seed12' / 'ShapeNet55' / 'shapenet_views'
    pre_views = {p.read_bytes() for p in pre_root.glob('*/[0-9][0-9].png')}
    eval_views = [p.read_bytes() for p in eval_root.glob('*/[0-9][0-9].png')]
    assert len(pre_views) == 24 and len(eval_views) == 6  # RGB views: 6 x 4 and 6 x 1
    assert pre_views.isdisjoint(eval_views)
    cells = {(r['backbone'], r['protocol']) for r in result['rows']}
    assert cells == {('pretrained', 'linear_probe'), ('scratch', 'linear_probe'),
                     ('teacher', 'linear_probe'), ('pretrained', 'finetune'),
                     ('scratch', 'finetune')}
    saved = json.loads((out / 'transfer.json').read_text())
    assert saved['rows'] == json.loads(json.dumps(result['rows']))
    assert all(torch.isfinite(v).all() for v in state.values())
