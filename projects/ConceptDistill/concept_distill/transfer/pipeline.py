"""What tools/transfer.py and tools/train_render_teacher.py run: resolve the teacher, make the
held-out data, optionally pre-train, run the benchmark, write the table.

Instance disjointness comes from the data seeds: an instance depends only on (seed, class,
instance number), so roots made with different seeds share no object. Defaults: teacher
renders seed 1000, pre-training objects seed 2000, downstream objects seed 3000.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from concept_distill.datasets.converters.synthetic.objects import OBJECT_CLASSES
from concept_distill.transfer.benchmark import (
    FRACTIONS,
    SEEDS,
    TransferError,
    run_transfer,
    write_table,
)
from concept_distill.transfer.object_data import DOWNSTREAM_COMMAND, create_downstream_root
from concept_distill.transfer.render_teacher import (
    RENDER_TEACHER_ARCH,
    RENDER_TEACHER_MODEL,
    create_teacher_views,
    teacher_config,
    train_render_teacher,
)

TEACHER_DATA_SEED = 1000
PRETRAIN_DATA_SEED = 2000
DOWNSTREAM_DATA_SEED = 3000
# All 18 synthetic furniture classes: six distinct ones (the demo's) saturate every row,
# a random backbone's included (docs/benchmarks.md, Transfer).
BENCHMARK_CLASSES = OBJECT_CLASSES


def resolve_teacher(spec: str | None, model_name: str | None = None, seed: int = 0
                    ) -> dict | None:
    """A CLIPTeacher config from the command line's ``--teacher``.

    ``random``: the render teacher's architecture, randomly initialised (``seed``); a path
    with a ``.json`` sidecar: a render teacher (its saved config); any other file: real CLIP
    weights for open_clip model `model_name` (e.g. ViT-B-16); None: no teacher row."""
    if spec is None:
        return None
    if spec == 'random':
        return dict(type='CLIPTeacher', model_name=model_name or RENDER_TEACHER_MODEL,
                    pretrained=None, seed=seed, resize_mode='squash',
                    arch_overrides=None if model_name else RENDER_TEACHER_ARCH)
    if not os.path.isfile(spec):
        raise FileNotFoundError(f'teacher weights file not found: {spec}')
    if os.path.isfile(f'{spec}.json'):
        return teacher_config(spec)
    if not model_name:
        raise TransferError(f'{spec}: not a render teacher (no {spec}.json beside it); give '
                            f'the open_clip model name of these weights (--teacher-model)')
    return dict(type='CLIPTeacher', model_name=model_name, pretrained=spec,
                resize_mode='squash')


def train_teacher_on_renders(out: str | os.PathLike, work_dir: str | os.PathLike,
                             classes: Sequence[str] = BENCHMARK_CLASSES, num_per_class: int = 12,
                             test_per_class: int = 2, data_seed: int = TEACHER_DATA_SEED,
                             num_views: int = 4, views_root: str | os.PathLike | None = None,
                             **train_kwargs) -> dict:
    """Render labelled views (unless `views_root` is given) and train the render teacher."""
    if views_root is None:
        views_root = create_teacher_views(Path(work_dir) / f'teacher_views_seed{data_seed}',
                                          classes, num_per_class, test_per_class, data_seed,
                                          num_views)
    summary = train_render_teacher(views_root, out, **train_kwargs)
    return dict(summary, data_seed=data_seed)


def downstream_seed(objects_root: str | os.PathLike) -> int | None:
    """The data seed recorded in a downstream root's output-guard record (None for a root
    this module did not make)."""
    from concept_distill.datasets.converters.output_guard import MANIFEST, read_json

    record = read_json(Path(objects_root) / MANIFEST) or {}
    if record.get('command') != DOWNSTREAM_COMMAND:
        return None
    return record.get('params', {}).get('seed')


def transfer_pipeline(out_dir: str | os.PathLike, export: str | os.PathLike | None = None,
                      pretrain_config: str | None = None, teacher: str | None = None,
                      teacher_model: str | None = None, objects_root: str | None = None,
                      classes: Sequence[str] = BENCHMARK_CLASSES, num_per_class: int = 30,
                      test_per_class: int = 10, data_seed: int = DOWNSTREAM_DATA_SEED,
                      num_views: int = 4, seeds: Sequence[int] = SEEDS,
                      fractions: Sequence[float] = FRACTIONS,
                      pretrain_kwargs: Mapping | None = None, name: str = 'transfer',
                      **run_kwargs) -> dict:
    """Make / reuse the downstream root, get an export (given, or pre-trained here), run the
    benchmark and write ``<out_dir>/<name>.{md,json}``. Returns the result (+ paths)."""
    out = Path(out_dir)
    teacher_cfg = resolve_teacher(teacher, teacher_model)
    if objects_root is None:
        objects_root = create_downstream_root(out / f'downstream_seed{data_seed}', classes,
                                              num_per_class, test_per_class, data_seed,
                                              num_views)
    else:  # a root this module made says its seed; another one's seed is unknown
        data_seed = downstream_seed(objects_root)
    provenance: dict = dict(downstream_data_seed=data_seed)
    provenance['objects_root'] = str(objects_root)
    if export is None:
        if pretrain_config is None:
            raise TransferError('give a backbone export (--export) or a pre-training config '
                                '(--pretrain-config)')
        from concept_distill.transfer.pretrain import pretrain_objects

        kwargs = dict(pretrain_kwargs or {})
        if data_seed is not None and kwargs.get('data_seed') == data_seed:
            raise TransferError(f'pre-training data seed {data_seed} equals the downstream '
                                f'one: the evaluation objects would be pre-training objects')
        run = pretrain_objects(pretrain_config, out / 'pretrain', teacher_cfg, classes=classes,
                               **kwargs)
        export = run['export']
        provenance['pretrain'] = run
    else:
        provenance['export_given'] = str(export)
    result = run_transfer(export, objects_root, teacher_cfg, seeds=seeds, fractions=fractions,
                          provenance=provenance, **run_kwargs)
    md, js = write_table(result, out, name)
    return dict(result, table=str(md), json=str(js))


__all__ = ['BENCHMARK_CLASSES', 'DOWNSTREAM_DATA_SEED', 'PRETRAIN_DATA_SEED', 'TEACHER_DATA_SEED',
           'downstream_seed', 'resolve_teacher', 'train_teacher_on_renders', 'transfer_pipeline']
