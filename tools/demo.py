"""The main job (`make demo`): concept-distillation pre-training and VoteNet transfer, end to end.

    python tools/demo.py [--out demo_output] [--scale 1.0] [--clip-weights PATH]
                         [--data-root DIR] [--force]

On a machine with no dataset and no CLIP weights it:
  1. generates synthetic ScanNet-format scenes (tools/create_data.py synthetic),
  2. caches the teacher's embeddings of every frame (tools/extract_teacher_features.py),
  3. pre-trains VoteNet's PointNet2SASSG with concept alignment (tools/train.py),
  4. exports the backbone (tools/export_backbone.py),
  5. fine-tunes mmdet3d's VoteNet from scratch and from that backbone, same schedule,
  6. evaluates both (mmdet3d's IndoorMetric, mAP@0.25 / mAP@0.5),
  7. the object track: synthetic objects with rendered views -> teacher cache -> object
     pre-training -> export -> the transfer table on held-out objects (tools/transfer.py),
  8. writes OUT/report/report.md with tables, the exact commands and figures.
Every step is a real command of this repository; the report lists them. The stages and the
report are concept_distill.engine.demo and concept_distill.visualization.demo_report.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; bad input stops here, before anything is written (and before
    the package, slow to import, is loaded)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='demo_output', help='output folder (relative to the repo)')
    p.add_argument('--scale', type=float, default=1.0,
                   help='multiplies scenes, objects, frames and training lengths (1.0: the '
                   '~15 min budget on 2 idle cores)')
    p.add_argument('--clip-model', default='ViT-B-16')
    p.add_argument('--clip-weights', default=None,
                   help='local open_clip checkpoint of --clip-model (default: random init)')
    p.add_argument('--data-root', default=None,
                   help='a ScanNet root prepared by tools/create_data.py scannet (with frames); '
                   'default: generate synthetic scenes')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-object-track', dest='object_track', action='store_false',
                   help='skip the object track (objects, object pre-training, transfer table)')
    p.add_argument('--force', action='store_true',
                   help='replace an existing --out folder (never done silently)')
    args = p.parse_args(argv)
    if not math.isfinite(args.scale) or args.scale <= 0:
        p.error(f'--scale must be a positive number (got {args.scale})')
    if args.clip_weights and not Path(args.clip_weights).is_file():
        p.error(f'--clip-weights: no such file: {args.clip_weights} (a local open_clip '
                f'checkpoint of {args.clip_model}; nothing is downloaded)')
    if args.data_root:
        for split in ('train', 'val'):
            info = Path(args.data_root) / f'scannet_infos_{split}.pkl'
            if not info.is_file():
                p.error(f'--data-root: {info} not found; prepare the root with '
                        f'`python tools/create_data.py scannet --root-path {args.data_root}`')
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    from concept_distill.engine.demo import run_demo

    run_demo(args, ROOT)


if __name__ == '__main__':
    main()
