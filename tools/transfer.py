"""Transfer benchmark on held-out synthetic objects: linear probe, few-label fine-tuning,
scratch and the teacher reference, over seeds (docs/transfer.md).

    python tools/transfer.py --out-dir work_dirs/transfer --export backbone_latest.pth \
        [--teacher teacher.pt | random | /path/clip.pt --teacher-model ViT-B-16] \
        [--objects-root ROOT] [--classes ...] [--num-per-class 30] [--test-per-class 10] \
        [--data-seed 3000] [--seeds 0 1 2] [--fractions 0.01 0.1 1] [--finetune-steps 100]
    python tools/transfer.py --out-dir ... --pretrain-config CFG --teacher teacher.pt \
        [--pretrain-iters 300] [--pretrain-data-seed 2000]

Writes ``<out-dir>/<name>.md`` (table) and ``<name>.json`` (rows, goal, provenance).
"""
from __future__ import annotations

import argparse

from concept_distill.datasets.converters.synthetic.objects import OBJECT_CLASSES
from concept_distill.transfer.pipeline import (
    BENCHMARK_CLASSES,
    DOWNSTREAM_DATA_SEED,
    PRETRAIN_DATA_SEED,
    transfer_pipeline,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out-dir', required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--export', help='pre-trained backbone export (.pth)')
    src.add_argument('--pretrain-config', help='pre-train first with this config (short run '
                                               'through tools/train.py)')
    p.add_argument('--teacher', help="the distilled teacher: a render-teacher file, 'random', "
                                     'or a CLIP weights file with --teacher-model; omit for no '
                                     'teacher row')
    p.add_argument('--teacher-model', help='open_clip model name of a CLIP weights file')
    p.add_argument('--objects-root', help='existing downstream root (modelnet40_normal_'
                                          'resampled/ + ShapeNet55/shapenet_views/)')
    p.add_argument('--classes', nargs='+', default=list(BENCHMARK_CLASSES),
                   choices=list(OBJECT_CLASSES))
    p.add_argument('--num-per-class', type=int, default=30)
    p.add_argument('--test-per-class', type=int, default=10)
    p.add_argument('--num-views', type=int, default=4)
    p.add_argument('--data-seed', type=int, default=DOWNSTREAM_DATA_SEED,
                   help='seed of the downstream instances')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--fractions', type=float, nargs='+', default=[0.01, 0.1, 1.0])
    p.add_argument('--num-points', type=int, default=1024)
    p.add_argument('--finetune-steps', type=int, default=100)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=5e-4)
    p.add_argument('--probe-c', type=float, default=1.0, help='inverse L2 strength of the probe')
    p.add_argument('--pretrain-iters', type=int, default=300)
    p.add_argument('--pretrain-data-seed', type=int, default=PRETRAIN_DATA_SEED)
    p.add_argument('--pretrain-num-per-class', type=int, default=30)
    p.add_argument('--pretrain-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='--cfg-options for the pre-training run')
    p.add_argument('--name', default='transfer', help='file name of the table / JSON')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run and print the table."""
    a = parse_args(argv)
    result = transfer_pipeline(
        a.out_dir, export=a.export, pretrain_config=a.pretrain_config, teacher=a.teacher,
        teacher_model=a.teacher_model, objects_root=a.objects_root, classes=a.classes,
        num_per_class=a.num_per_class, test_per_class=a.test_per_class,
        data_seed=a.data_seed, num_views=a.num_views, seeds=a.seeds, fractions=a.fractions,
        pretrain_kwargs=dict(iters=a.pretrain_iters, data_seed=a.pretrain_data_seed,
                             num_per_class=a.pretrain_num_per_class,
                             cfg_options=a.pretrain_options),
        name=a.name, num_points=a.num_points, finetune_steps=a.finetune_steps,
        batch_size=a.batch_size, lr=a.lr, probe_c=a.probe_c)
    with open(result['table']) as f:
        print(f.read())
    print(f"table: {result['table']}\njson: {result['json']}")
    return result


if __name__ == '__main__':
    main()
