"""The fine-tuning matrix (engine/finetune_matrix.py, tools/finetune_matrix.py): planning from the
project's downstream configs, per-run resumption and completion markers, the results table, and
an end-to-end run of mmdet3d's VoteNet from an export and from scratch on a tiny synthetic
root."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT

from concept_distill.engine.finetune_matrix import (
    MARKER,
    FinetuneMatrixError,
    Run,
    markdown_table,
    plan_matrix,
    read_final_metrics,
    run_matrix,
)

VOTENET_PRE = 'configs/demo/votenet_synthetic_pretrained.py'
# Every downstream config the tool is meant for at full size (issue 16, item 5).
FULL_SIZE = sorted(str(p.relative_to(REPO_ROOT)) for d in (
    'votenet', '3detr', 'minkunet', 'classification', 'part_segmentation')
    for p in (REPO_ROOT / 'configs' / d).glob('*concept-distill*.py'))


def _export(path: Path) -> Path:
    """A stand-in backbone export: torch.save of {'state_dict': {'backbone.<key>': tensor}},
    the documented export layout (docs/model_zoo.md), of VoteNet's PointNet2SASSG."""
    from mmdet3d.registry import MODELS
    from mmengine.config import Config

    torch.manual_seed(123)
    backbone = MODELS.build(Config.fromfile(str(REPO_ROOT / VOTENET_PRE)).model.backbone)
    state = {f'backbone.{k}': v.clone() for k, v in backbone.state_dict().items()}
    torch.save({'state_dict': state, 'meta': {'note': 'test export'}}, path)
    return path


def test_every_full_size_config_plans_from_an_export_and_from_scratch(tmp_path):
    assert len(FULL_SIZE) >= 9 and any('votenet' in c for c in FULL_SIZE)
    assert any('3detr' in c for c in FULL_SIZE) and any('s3dis' in c for c in FULL_SIZE)
    export = tmp_path / 'ppt.pth'
    export.write_bytes(b'an export')  # planning only checks that the file exists
    runs = plan_matrix(FULL_SIZE, [f'cd={export}'], [0, 1], tmp_path / 'm', REPO_ROOT)
    assert len(runs) == len(FULL_SIZE) * 2 * 2
    assert len({r.work_dir for r in runs}) == len(runs)
    for run in runs:
        assert run.cmd[1].endswith('tools/train.py') and f'randomness.seed={run.seed}' in run.cmd
        if run.init == 'scratch':
            assert 'model.backbone.init_cfg=None' in run.cmd
            assert not any('init_cfg.checkpoint' in c for c in run.cmd)
        else:
            assert f'model.backbone.init_cfg.checkpoint={export.resolve()}' in run.cmd
    # Several GPUs: the same arguments through tools/dist_train.sh.
    single = plan_matrix(FULL_SIZE[:1], [str(export)], [0], tmp_path / 'd', REPO_ROOT)
    dist = plan_matrix(FULL_SIZE[:1], [str(export)], [0], tmp_path / 'd', REPO_ROOT, gpus=4)
    for one, many in zip(single, dist):
        assert many.cmd[:2] == ['bash', str(REPO_ROOT / 'tools' / 'dist_train.sh')]
        assert many.cmd[2] == one.cmd[2] and many.cmd[3] == '4' and many.cmd[4:] == one.cmd[3:]


def test_planning_refuses_bad_input(tmp_path):
    export = tmp_path / 'e.pth'
    export.write_bytes(b'x')
    with pytest.raises(FinetuneMatrixError, match='votenet_synthetic.py: model.backbone.init_cfg'):
        plan_matrix(['configs/demo/votenet_synthetic.py'], [str(export)], [0], tmp_path,
                    REPO_ROOT)
    with pytest.raises(FinetuneMatrixError, match='no such file: .*missing.pth'):
        plan_matrix([VOTENET_PRE], [str(tmp_path / 'missing.pth')], [0], tmp_path, REPO_ROOT)
    with pytest.raises(FinetuneMatrixError, match='share a label'):
        plan_matrix([VOTENET_PRE], [f'a={export}', f'a={export}'], [0], tmp_path, REPO_ROOT)
    with pytest.raises(FinetuneMatrixError, match='seeds'):
        plan_matrix([VOTENET_PRE], [str(export)], [1, 1], tmp_path, REPO_ROOT)


# Stands for tools/train.py: logs what mmengine's LocalVisBackend logs (one JSON record per
# line in <work_dir>/<timestamp>/vis_data/scalars.json; the validation record carries the
# metric's keys and the epoch as `step`) and its checkpoint file, and records its arguments.
_FAKE_TRAIN = r'''
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
wd = Path(args[args.index('--work-dir') + 1])
with open(wd / 'calls.jsonl', 'a') as f:
    f.write(json.dumps(args) + '\n')
if 'FAIL' in args:
    sys.exit(3)
seed = int(next(a for a in args if a.startswith('randomness.seed=')).split('=')[1])
base = 0.5 if any('init_cfg.checkpoint=' in a for a in args) else 0.2
vis = wd / time.strftime('%Y%m%d_%H%M%S') / 'vis_data'
vis.mkdir(parents=True, exist_ok=True)
records = [dict(step=1, lr=0.01, loss=2.0),
           {'step': 4, 'chair_AP_0.25': base + seed / 10, 'bed_AP_0.25': float('nan'),
            'chair_AP_0.50': base / 2, 'mAP_0.25': float('nan'), 'mAP_0.50': base / 2}]
(vis / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))
(wd / 'epoch_4.pth').write_bytes(b'ckpt')
(wd / 'last_checkpoint').write_text(str(wd / 'epoch_4.pth'))
'''


def _fake_runs(tmp_path: Path, export: Path) -> list[Run]:
    """The planned runs of the demo VoteNet config, their command pointed at the fake."""
    script = tmp_path / 'fake_train.py'
    script.write_text(_FAKE_TRAIN)
    runs = plan_matrix([VOTENET_PRE], [f'cd={export}'], [0, 1], tmp_path / 'm', REPO_ROOT)
    for run in runs:
        run.cmd = [sys.executable, str(script), *run.cmd[2:]]
    return runs


def _calls(run: Run) -> list[list[str]]:
    path = Path(run.work_dir) / 'calls.jsonl'
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_matrix_table_markers_skip_and_resume(tmp_path):
    export = tmp_path / 'e.pth'
    export.write_bytes(b'x')
    runs = _fake_runs(tmp_path, export)
    table = run_matrix(runs, tmp_path / 'm', log=lambda s: None)

    # One row per (config, init); mean and sample std over the seeds; the protocol.
    assert [r['init'] for r in table['rows']] == ['scratch', 'cd']
    scratch, pre = table['rows']
    assert scratch['seeds'] == [0, 1] and scratch['task'] == '3D detection'
    # mAP over the classes present (the NaN class is left out), per seed.
    assert scratch['per_seed']['mAP_0.25'] == pytest.approx([0.2, 0.3])
    assert scratch['mean']['mAP_0.25'] == pytest.approx(0.25)
    assert scratch['std']['mAP_0.25'] == pytest.approx(0.0707107, rel=1e-5)
    assert pre['delta_vs_scratch']['mAP_0.25'] == pytest.approx(0.3)
    assert scratch['delta_vs_scratch'] is None
    assert pre['protocol']['schedule'] == '4 epochs' and pre['protocol']['select'] == 'last'
    saved = json.loads((tmp_path / 'm' / 'results.json').read_text())
    assert saved['rows'][1]['mean']['mAP_0.25'] == pytest.approx(0.55)
    md = (tmp_path / 'm' / 'results.md').read_text()
    assert md == markdown_table(table)
    assert ('| 3D detection | `votenet_synthetic_pretrained` | scratch | mAP_0.25 | '
            '0.250 ± 0.071 |') in md
    assert '| cd | mAP_0.25 | 0.550 ± 0.071 | +0.300 | 2 | 0.500, 0.600 |' in md
    for run in runs:
        assert len(_calls(run)) == 1 and '--resume' not in _calls(run)[0]
        assert json.loads(run.marker.read_text())['values']['mAP_0.25'] > 0

    # Rerun: finished runs are not run again. A run without its marker but with a
    # checkpoint was interrupted: it resumes (--resume), and gets its marker.
    runs[1].marker.unlink()
    run_matrix(runs, tmp_path / 'm', log=lambda s: None)
    assert [len(_calls(r)) for r in runs] == [1, 2, 1, 1]
    assert _calls(runs[1])[1][-1] == '--resume' and runs[1].marker.is_file()

    # A marker of another run in the same place is never taken for this one.
    other = _fake_runs(tmp_path, export)
    other[0].cmd.append('train_cfg.max_epochs=8')
    with pytest.raises(FinetuneMatrixError, match='describes another run'):
        run_matrix(other, tmp_path / 'm', log=lambda s: None)


def test_a_failed_run_stops_the_matrix_without_a_marker(tmp_path):
    export = tmp_path / 'e.pth'
    export.write_bytes(b'x')
    runs = _fake_runs(tmp_path, export)
    runs[0].cmd.append('FAIL')
    with pytest.raises(FinetuneMatrixError, match=r'run failed \(exit 3\).*seed0'):
        run_matrix(runs, tmp_path / 'm', log=lambda s: None)
    assert not runs[0].marker.exists() and not (tmp_path / 'm' / 'results.md').exists()


def test_final_metrics_from_scalars_or_the_text_log(tmp_path):
    vis = tmp_path / '20261202_010101' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text('{"step": 2, "overall_acc": 0.4}\n'
                                      '{"step": 4, "overall_acc": 0.3, "mean_class_acc": 0.2}\n')
    assert read_final_metrics(tmp_path, ['overall_acc'], 4) == dict(
        step=4, overall_acc=0.3, mean_class_acc=0.2)
    assert read_final_metrics(tmp_path, ['overall_acc'], 4, 'best')['overall_acc'] == 0.4
    with pytest.raises(FinetuneMatrixError, match='at step 4, not at the end of training \\(6\\)'):
        read_final_metrics(tmp_path, ['overall_acc'], 6)
    with pytest.raises(FinetuneMatrixError, match="no logged validation holds 'miou'"):
        read_final_metrics(tmp_path, ['miou'], 4)
    # No scalars.json: mmengine's text log's validation summary line (not its progress lines).
    log_dir = tmp_path / 'log_only' / '20261202_020202'
    log_dir.mkdir(parents=True)
    (log_dir / '20261202_020202.log').write_text(
        '2026/12/02 02:02:10 - mmengine - INFO - Epoch(val) [3][ 5/10]    eta: 0:00:01  '
        'time: 0.1\n'
        '2026/12/02 02:02:12 - mmengine - INFO - Epoch(val) [3][10/10]    miou: 0.4125  '
        'acc: 0.8000  acc_cls: 0.5500  data_time: 0.01  time: 0.10\n')
    got = read_final_metrics(tmp_path / 'log_only', ['miou'], 3)
    assert got['miou'] == 0.4125 and got['acc_cls'] == 0.55 and got['step'] == 3


@pytest.mark.slow
def test_votenet_from_an_export_and_from_scratch_end_to_end(tmp_path, synthetic_root,
                                                            import_tool, capsys):
    """tools/finetune_matrix.py on the demo VoteNet config, 2 seeds x (export, scratch), 1
    epoch on 2 tiny synthetic scenes: real tools/train.py runs, the table, the skip on rerun,
    the resume of a run whose marker is missing, and the runs' different starting weights."""
    from concept_distill.checkpoint.checkpoint_io import load_checkpoint_file

    root = synthetic_root(num_scenes=3, val_scenes=1, seed=2, num_frames=2,
                          points_per_scene=5000, image_size=(48, 64))
    export = _export(tmp_path / 'backbone_export.pth')
    work = tmp_path / 'matrix'
    argv = ['--configs', VOTENET_PRE, '--exports', f'cd={export}', '--seeds', '0', '1',
            '--work-dir', str(work), '--cfg-options',
            f'train_dataloader.dataset.dataset.data_root={root}/',
            f'val_dataloader.dataset.data_root={root}/',
            f'test_dataloader.dataset.data_root={root}/', 'train_dataloader.dataset.times=1',
            'train_dataloader.batch_size=2', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
            # Fewer sampled points and neighbours: the same parameters (the export still
            # fits), a fraction of the compute.
            'model.backbone.num_points=[256,128,64,32]', 'model.backbone.num_samples=[16,8,8,8]',
            'model.bbox_head.vote_aggregation_cfg.num_point=32',
            '--transform-options', 'PointSample.num_points=1024']
    tool = import_tool('finetune_matrix')
    table = tool.main(argv)
    assert [(r['init'], r['seeds']) for r in table['rows']] == [('scratch', [0, 1]),
                                                                 ('cd', [0, 1])]
    for row in table['rows']:
        assert set(row['per_seed']) == {'mAP_0.25', 'mAP_0.50'}
        assert all(0.0 <= v <= 1.0 or math.isnan(v) for v in row['per_seed']['mAP_0.25'])
        assert row['protocol']['schedule'] == '1 epochs'
    md = (work / 'results.md').read_text()
    assert md.count('`votenet_synthetic_pretrained`') == 4  # 2 inits x 2 metrics

    # Pre-trained runs loaded the export (the guard hook checked every tensor); scratch runs
    # had no Pretrained init. Their final backbones: a pre-trained one stays near the export
    # after one step, a scratch one is another random draw.
    key = 'backbone.SA_modules.0.mlps.0.layer0.conv.weight'
    ref = torch.load(export, weights_only=True)['state_dict'][key]
    dist = {}
    for run_dir in sorted((work / 'runs' / 'votenet_synthetic_pretrained').glob('*/seed*')):
        log = (run_dir / 'finetune_stdout.log').read_text()
        pretrained = run_dir.parent.name == 'cd'
        assert ('PretrainedBackboneCheckHook: all' in log) == pretrained, run_dir
        assert ('has no Pretrained init_cfg' in log) == (not pretrained), run_dir
        ckpt = (run_dir / 'last_checkpoint').read_text().strip()
        weight = load_checkpoint_file(ckpt, trusted=True)['state_dict'][key]
        dist[(run_dir.parent.name, run_dir.name)] = float((weight - ref).norm() / ref.norm())
    assert max(dist[('cd', s)] for s in ('seed0', 'seed1')) < 0.2, dist
    assert min(dist[('scratch', s)] for s in ('seed0', 'seed1')) > 0.8, dist

    # Rerun: nothing is trained again, the table is the same.
    stamps = {p: p.stat().st_mtime_ns for p in work.rglob(MARKER)}
    capsys.readouterr()
    again = tool.main(argv)
    assert capsys.readouterr().out.count('done already') == 4
    assert {p: p.stat().st_mtime_ns for p in work.rglob(MARKER)} == stamps
    assert again['rows'] == table['rows']

    # A finished run whose marker is lost counts as interrupted: it resumes from its
    # checkpoint (no epoch left to train) and its final validation is read back.
    lost = work / 'runs' / 'votenet_synthetic_pretrained' / 'cd' / 'seed1' / MARKER
    lost.unlink()
    resumed = tool.main(argv)
    assert lost.is_file() and json.loads(lost.read_text())['resumed'] is True
    assert resumed['rows'][1]['per_seed'] == table['rows'][1]['per_seed']
