"""A short object pre-training for the transfer benchmark, through the project's own tools.

Writes the pre-training objects (ShapeNet-55 layout with views, instances of their own data
seed), a derived config (``_base_`` = the given pre-training config; the teacher, data root
and schedule replaced), caches the teacher's features with tools/extract_teacher_features.py
and trains with tools/train.py; the run's ``backbone_latest.pth`` is the export.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]

DERIVED = """_base_ = [{base!r}]
data_root = {root!r}
max_iters = {iters}
model = dict(teacher=dict(_delete_=True, **{teacher!r}))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end={warm}),
    dict(type='CosineAnnealingLR', by_epoch=False, begin={warm}, end=max_iters,
         T_max=max_iters - {warm}, eta_min=1e-5),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed={seed})
"""


def _run(cmd: Sequence[str], log_file: Path) -> None:
    """Run a tool; on failure raise with the tail of its output (kept in `log_file`)."""
    proc = subprocess.run(list(cmd), cwd=REPO_ROOT, capture_output=True, text=True)
    log_file.write_text(proc.stdout + '\n' + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f'{" ".join(cmd[1:3])} failed ({proc.returncode}); log: '
                           f'{log_file}\n{tail}')


def teacher_image_size(teacher: Mapping) -> tuple[int, int]:
    """The input size of a CLIPTeacher config (its open_clip config with the overrides)."""
    import open_clip

    base = open_clip.get_model_config(str(teacher['model_name']).replace('/', '-')) or {}
    vision = dict(base.get('vision_cfg') or {})
    vision.update((teacher.get('arch_overrides') or {}).get('vision_cfg') or {})
    size = vision.get('image_size', 224)
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else \
        (int(size), int(size))


def pretrain_objects(config: str, work_dir: str | os.PathLike, teacher: Mapping,
                     classes: Sequence[str], num_per_class: int = 30, data_seed: int = 2000,
                     num_views: int = 4, iters: int = 300, seed: int = 0,
                     cfg_options: Sequence[str] = ()) -> dict:
    """Pre-train on fresh synthetic objects with `teacher`; returns dict(export, ...)."""
    from concept_distill.datasets.converters.output_guard import run_guarded
    from concept_distill.datasets.converters.synthetic.synthetic_objects import (
        create_synthetic_objects,
    )

    if teacher is None:
        raise ValueError('pre-training needs a teacher (--teacher)')
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / f'objects_seed{data_seed}'
    args = dict(classes=list(classes), num_per_class=num_per_class, seed=data_seed,
                num_views=num_views)
    # One test object per class for the run's retrieval check; train = the rest. Reused
    # when made with the same arguments; other objects in the folder are an error.
    run_guarded(data, 'transfer-pretrain-objects', args, False, lambda: create_synthetic_objects(
        data, num_per_class=num_per_class, test_per_class=1, seed=data_seed, classes=classes,
        layouts=('shapenet55',), num_views=num_views))
    teacher = {k: v for k, v in dict(teacher).items() if k != 'type'}
    size = teacher_image_size(teacher)
    derived = work / 'pretrain_config.py'
    derived.write_text(DERIVED.format(base=str(Path(config).resolve()),
                                      root=str(data / 'ShapeNet55') + '/', iters=iters,
                                      teacher=dict(type='CLIPTeacher', **teacher),
                                      warm=max(1, iters // 10), seed=seed))
    cache = work / 'teacher_cache'
    size_opt = f'({size[0]},{size[1]})'
    transform = ['--transform-options', f'ResizeCropForTeacher.size={size_opt}',
                 f'LoadTeacherFeatures.preprocessing.size={size_opt}',
                 f'LoadTeacherFeatures.cache_dir={cache}']
    extra = ['--cfg-options', *cfg_options] if cfg_options else []
    _run([sys.executable, str(REPO_ROOT / 'tools' / 'extract_teacher_features.py'),
          str(derived), '--tokens', 'patch', '--cache-dir', str(cache), *extra, *transform],
         work / 'extract.log')
    run_dir = work / 'run'
    _run([sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), str(derived), '--work-dir',
          str(run_dir), *extra, *transform], work / 'train.log')
    export = run_dir / 'backbone_latest.pth'
    if not export.is_file():
        raise FileNotFoundError(f'{export}: the pre-training wrote no backbone export')
    return dict(export=str(export), config=str(derived), base_config=str(config),
                data_root=str(data), data_seed=data_seed, num_per_class=num_per_class,
                iters=iters, seed=seed, classes=list(classes))


__all__ = ['pretrain_objects']
