"""The main job, end to end at a small scale: tools/demo.py generates data, caches the teacher,
pre-trains, exports, fine-tunes VoteNet twice and writes a report; it never replaces an
existing output folder unless asked."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

REPO = REPO_ROOT
FIGURES = ('curves.png', 'pairing.png', 'concepts.png', 'boxes.png', 'transfer.png')
OBJECT_TOOLS = ['tools/create_object_data.py', 'tools/create_object_data.py',
                'tools/extract_teacher_features.py', 'tools/train.py', 'tools/export_backbone.py',
                'tools/transfer.py']


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, 'tools/demo.py', '--out', str(out), '--scale', '0.1',
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_demo_small_scale_end_to_end(tmp_path):
    out = tmp_path / 'demo'
    run = _demo(out)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    # The screen: every step with its command, then the one-screen summary.
    assert 'RANDOMLY INITIALISED' in run.stdout
    steps = ['Generate synthetic', "Cache the CLIP teacher's", 'Pre-train',
             'Export the backbone', 'from scratch', 'from the pre-trained',
             'Generate synthetic pre-training objects', 'Generate held-out objects',
             "Cache the teacher's embeddings of every object view", 'Pre-train the point-patch',
             'Export the object backbone', 'Transfer table', 'Write the report']
    for i, step in enumerate(steps, 1):
        assert re.search(rf'\[{i}/{len(steps)}\] .*{step}', run.stdout), step
    assert 'ConceptDistill demo: done in' in run.stdout
    assert 'RANDOM CLIP TEACHER' in run.stdout.split('ConceptDistill demo: done in')[1]

    report = (out / 'report' / 'report.md').read_text()
    assert '**The CLIP teacher was randomly initialised**' in report
    # Both VoteNet rows carry a measured mAP in [0, 1] (mmdet3d's metric, present classes).
    for row in ('random (scratch)', 'concept-distilled'):
        m = re.search(rf'\| {re.escape(row)} \| ([\d.]+) \| ([\d.]+) \|', report)
        assert m and all(0.0 <= float(v) <= 1.0 for v in m.groups()), row
    # The exact commands, runnable from the repository root.
    assert 'python tools/train.py configs/demo/votenet_synthetic_pretrained.py' in report
    assert 'python tools/transfer.py --out-dir' in report

    # The object track: the transfer table (pre-trained, scratch and the teacher's reference,
    # each protocol at each label fraction, accuracy in [0, 100] % with the seeds' spread),
    # the teacher of each row, and the plot.
    assert '## Object track: transfer to held-out objects' in report
    rows = re.findall(r'^\| (pretrained|scratch|teacher) \| (linear probe|finetune) \| '
                      r'([\d.]+)% \(\d+\) \| ([\d.]+) ± ([\d.]+) \| 0,1,2 \|', report, re.M)
    cells = {(b, p, float(f)) for b, p, f, _, _ in rows}
    assert len(rows) == len(cells) == 3 * 2 * 2 + 3, rows  # teacher: linear probe only
    assert all(0.0 <= float(m) <= 100.0 for *_, m, _ in rows)
    assert 'Teacher of each row:' in report and 'teacher: random ViT-B-16' in report
    assert '![Transfer to held-out objects: accuracy vs label fraction](transfer.png)' in report
    for name in FIGURES:
        png = (out / 'report' / name).read_bytes()
        assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000, name

    # The pre-trained run really started from the exported backbone, every key matching.
    exported = out / 'pretrain' / 'backbone_exported.pth'
    assert exported.is_file()
    log = (out / 'logs' / 'votenet_pretrained.log').read_text()
    assert re.search(r'PretrainedBackboneCheckHook: all \d+ backbone', log)

    # A second run into the same folder refuses and leaves everything as it was.
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*')}
    again = _demo(out)
    assert again.returncode != 0 and '--force' in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*')} == before


@pytest.mark.parametrize('scale', ['0', '-1', 'nan', 'inf'])
def test_demo_rejects_a_scale_that_is_not_a_positive_number(tmp_path, scale):
    run = _demo(tmp_path / 'x', '--scale', scale)
    assert run.returncode == 2 and '--scale must be a positive number' in run.stderr
    assert not (tmp_path / 'x').exists()


def test_demo_names_missing_weights_and_data(tmp_path):
    run = _demo(tmp_path / 'x', '--clip-weights', str(tmp_path / 'nope.bin'))
    assert run.returncode == 2 and 'nope.bin' in run.stderr
    run = _demo(tmp_path / 'x', '--data-root', str(tmp_path))
    assert run.returncode == 2 and 'scannet_infos_train.pkl' in run.stderr
    assert 'create_data.py scannet' in run.stderr
    assert not (tmp_path / 'x').exists()


def _demo_args(**kwargs) -> argparse.Namespace:
    """tools/demo.py's arguments (its defaults) with ``kwargs`` replaced."""
    return argparse.Namespace(**{**dict(out='demo_output', scale=1.0, clip_model='ViT-B-16',
                                        clip_weights=None, data_root=None, seed=0,
                                        force=False, object_track=True), **kwargs})


def test_data_root_and_clip_weights_reach_every_command(tmp_path, synthetic_root):
    from concept_distill.engine.demo import plan
    from concept_distill.visualization.demo_report import data_description

    # Stands for a user's root prepared by create_data.py.
    root = synthetic_root(num_scenes=2, seed=1, num_frames=3, points_per_scene=5000,
                          image_size=(48, 64), val_scenes=1)
    weights = tmp_path / 'open_clip_vit_b_16.bin'
    weights.write_bytes(b'stands for a checkpoint')
    args = _demo_args(data_root=str(root), clip_weights=str(weights))
    stages, sizes = plan(args, tmp_path / 'out')

    # No generation step; every command reads the given root; the teacher gets the weights.
    assert [s.cmd[1] for s in stages] == ['tools/extract_teacher_features.py', 'tools/train.py',
                                          'tools/export_backbone.py', 'tools/train.py',
                                          'tools/train.py', *OBJECT_TOOLS]
    # The object track distils the same weights and its reference row is that teacher.
    for stage in stages[-4:-2]:
        assert f'model.teacher.pretrained={weights}' in stage.cmd, stage.name
        assert 'model.allow_random_teacher=True' not in stage.cmd
    assert stages[-1].cmd[stages[-1].cmd.index('--teacher'):][:4] == [
        '--teacher', str(weights), '--teacher-model', 'ViT-B-16']
    stages = stages[:5]
    for stage in stages[:2]:
        assert f'model.teacher.pretrained={weights}' in stage.cmd
        assert 'model.allow_random_teacher=True' not in stage.cmd  # the guard stays on
        # The cache is set on the transform by its type, never by its index in a pipeline.
        i = stage.cmd.index('--transform-options')
        assert stage.cmd[i + 1] == f'LoadTeacherFeatures.cache_dir={sizes["cache"]}'
    assert not any('pipeline.' in c for s in stages for c in s.cmd)
    for stage in stages[:2] + stages[3:]:
        assert any(c.endswith(f'data_root={root}/') for c in stage.cmd), stage.name
    assert sizes['data_root'] == str(root)
    # The report describes the root it was given, not the synthetic sizes.
    assert data_description(sizes, args) == (
        f'Data: the ScanNet-format root `{root}`: 1 train scenes (3 posed frames), '
        '1 val scenes (3 posed frames).')


def test_plan_scales_and_status_lines(tmp_path):
    from concept_distill.engine.demo import Stage, plan, status_line

    stages, sizes = plan(_demo_args(scale=0.1), tmp_path)
    assert len(stages) == 12 and stages[0].cmd[1:3] == ['tools/create_data.py', 'synthetic']
    assert [s.cmd[1] for s in stages[6:]] == OBJECT_TOOLS
    # The object track scales down too, keeping 3 seeds and one held-out object set whose
    # data seed differs from the pre-training objects'.
    assert (sizes['object_pretrain_per_class'], sizes['object_pretrain_iters'],
            sizes['finetune_steps'], sizes['transfer_seeds']) == (3, 4, 2, [0, 1, 2])
    seeds = [s.cmd[s.cmd.index('--seed') + 1] for s in stages[6:8]]
    assert seeds[0] != seeds[1]
    # Without CLIP weights the object teacher is the small render-teacher architecture, random,
    # in pre-training and in the transfer table's reference row alike.
    assert 'model.teacher.arch_overrides.vision_cfg.image_size=64' in stages[8].cmd
    assert stages[-1].cmd[stages[-1].cmd.index('--teacher') + 1] == 'random'
    assert len(plan(_demo_args(scale=0.1, object_track=False), tmp_path)[0]) == 6
    assert (sizes['num_scenes'], sizes['pretrain_iters'], sizes['votenet_epochs']) == (3, 5, 1)
    assert stages[2].shell.startswith('python tools/train.py configs/demo/')
    # Without weights the random teacher is asked for explicitly (the distiller refuses it).
    assert all('model.allow_random_teacher=True' in s.cmd for s in stages[1:3])
    assert Stage('x', [sys.executable, 'a b'], tmp_path).shell == "python 'a b'"
    line = ('2024/01/01 - mmengine - INFO - Iter(train) [ 10/50]  lr: 1e-3  eta: 0:01:02  '
            'time: 1.2  loss: 3.2500  loss_global: 3.2')
    assert status_line(line) == 'Iter(train) [10/50] eta 0:01:02 loss 3.2500'
    assert status_line('Epoch(val) [1][2/3]    eta: 0:00:01') == 'Epoch(val) [1][2/3] eta 0:00:01'
    assert status_line('teacher features:  40%|####  | 4/10 [00:02<00:03]').endswith('00:03]')
    assert status_line('an ordinary log line') == ''
