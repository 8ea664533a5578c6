"""Ctrl-C during tools/extract_teacher_features.py: where it stopped, exit 130, no traceback
(issue 18.7); the same command then resumes."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

TINY = dict(embed_dim=32,
            vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32, patch_size=16),
            text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))
TEACHER = dict(type='CLIPTeacher', model_name='ViT-B-16', arch_overrides=TINY, seed=0)

# The tool run as `python tools/extract_teacher_features.py ...`; a real SIGINT reaches the
# process as it is about to write its second chunk (what Ctrl-C in a terminal sends).
SCRIPT = """
import os, runpy, signal, sys
from concept_distill.datasets.teacher_cache import TeacherFeatureCache
write, calls = TeacherFeatureCache.write_rows, []
def ctrl_c_at_second_chunk(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return write(self, *args, **kwargs)
TeacherFeatureCache.write_rows = ctrl_c_at_second_chunk
sys.argv = ['tools/extract_teacher_features.py'] + sys.argv[1:]
runpy.run_path('tools/extract_teacher_features.py', run_name='__main__')
"""


@pytest.mark.slow  # one start of the script (imports mmdet3d): 1-2 min on a busy machine
@pytest.mark.filterwarnings('ignore:.*RANDOMLY')
def test_ctrl_c_exits_130_with_where_to_resume(synthetic_root, tmp_path, import_tool) -> None:
    root = synthetic_root(num_scenes=1, seed=4, num_frames=5, points_per_scene=8000,
                          image_size=(72, 96))
    cfg = tmp_path / 'pretrain_tiny.py'
    cfg.write_text(
        f"_base_ = ['{REPO_ROOT}/configs/_base_/datasets/scannet-paired.py']\n"
        f"train_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f"val_dataloader = dict(dataset=dict(data_root='{root}'))\n"
        f'model = dict(allow_random_teacher=True, teacher={TEACHER!r})\n')
    args = [str(cfg), '--cache-dir', str(tmp_path / 'cache'), '--splits', 'train',
            '--batch-size', '2']
    run = subprocess.run([sys.executable, '-c', SCRIPT, *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 130, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr and 'KeyboardInterrupt' not in run.stderr, \
        run.stderr[-3000:]
    assert ('teacher features: interrupted at 2 of 5 frames; run the same command again to '
            'resume') in run.stderr
    summary = import_tool('extract_teacher_features').main(args)  # the same command again
    assert summary['resumed_at'] == 2 and summary['done'] == 5
