"""Train the render teacher: a small open_clip image tower on labelled renders of synthetic
objects, saved as an open_clip weights file (+ ``<out>.json``, its CLIPTeacher config).

    python tools/train_render_teacher.py --out work_dirs/render_teacher/teacher.pt \
        [--work-dir work_dirs/render_teacher] [--views-root ROOT/ShapeNet55] \
        [--classes chair table ...] [--num-per-class 12] [--data-seed 1000] \
        [--steps 300] [--batch-size 64] [--lr 1e-3] [--seed 0] [--force]

Load it with ``model.teacher.pretrained=<out>`` and the sidecar's ``model_name`` /
``arch_overrides`` (``concept_distill.transfer.teacher_config(<out>)``). docs/transfer.md.
"""
from __future__ import annotations

import argparse
import json

from concept_distill.datasets.converters.synthetic.objects import OBJECT_CLASSES
from concept_distill.transfer.pipeline import (
    BENCHMARK_CLASSES,
    TEACHER_DATA_SEED,
    train_teacher_on_renders,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True, help='weights file to write')
    p.add_argument('--work-dir', default='work_dirs/render_teacher',
                   help='where the rendered views are written (when --views-root is not given)')
    p.add_argument('--views-root', help='existing ShapeNet-55 root with shapenet_views/')
    p.add_argument('--classes', nargs='+', default=list(BENCHMARK_CLASSES),
                   choices=list(OBJECT_CLASSES))
    p.add_argument('--num-per-class', type=int, default=12)
    p.add_argument('--test-per-class', type=int, default=2)
    p.add_argument('--num-views', type=int, default=4)
    p.add_argument('--data-seed', type=int, default=TEACHER_DATA_SEED,
                   help='seed of the rendered instances (use one no evaluation root uses)')
    p.add_argument('--steps', type=int, default=300)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--seed', type=int, default=0, help='seed of the init and the batches')
    p.add_argument('--force', action='store_true', help='overwrite an existing --out')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Train, save, print the summary (JSON)."""
    a = parse_args(argv)
    summary = train_teacher_on_renders(
        a.out, a.work_dir, classes=a.classes, num_per_class=a.num_per_class,
        test_per_class=a.test_per_class, data_seed=a.data_seed, num_views=a.num_views,
        views_root=a.views_root, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
        overwrite=a.force)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    main()
