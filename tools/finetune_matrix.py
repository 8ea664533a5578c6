"""Fine-tune downstream configs from backbone exports and from scratch, over seeds; one table.

    python tools/finetune_matrix.py --configs CFG [CFG ...] --exports [LABEL=]PTH [...] \
        [--seeds 0 1 2] [--no-scratch] [--gpus N] [--work-dir work_dirs/finetune_matrix] \
        [--select last|best] [--metric KEY] [--init-key model.backbone.init_cfg] \
        [--cfg-options k=v ...] [--transform-options TYPE.k=v ...] [--dry-run]

Each CFG is a downstream config whose backbone has a Pretrained init_cfg (the
*_concept-distill_* configs); the export replaces its checkpoint, and scratch sets the
init_cfg to None. Each run is tools/train.py (tools/dist_train.sh with --gpus N > 1) in its own
work dir under WORK_DIR/runs/; finished runs are skipped, interrupted ones resumed. The table
goes to WORK_DIR/results.md and results.json (format: docs/model_zoo.md). The runs and the
table are concept_distill.engine.finetune_matrix.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from concept_distill.engine.cli import add_override_arguments

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--configs', nargs='+', required=True, help='downstream configs')
    p.add_argument('--exports', nargs='*', default=[],
                   help='backbone exports, LABEL=PATH or PATH (label: file stem)')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--no-scratch', action='store_true', help='skip the scratch rows')
    p.add_argument('--gpus', type=int, default=1,
                   help='GPUs per run (> 1: tools/dist_train.sh, torchrun)')
    p.add_argument('--work-dir', default='work_dirs/finetune_matrix')
    p.add_argument('--select', choices=['last', 'best'], default='last',
                   help='which validation of a run is its result (default: the last)')
    p.add_argument('--metric', default=None,
                   help="primary metric key (default: by the config's val_evaluator)")
    p.add_argument('--init-key', default='model.backbone.init_cfg',
                   help='where the Pretrained init_cfg sits in the configs')
    add_override_arguments(parser=p)
    p.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    """Plan, run (or print) the matrix; print the table."""
    args = parse_args(argv)
    from concept_distill.engine.cli import setup_process
    from concept_distill.engine.finetune_matrix import plan_matrix, run_matrix

    setup_process(init_default_scope=False)
    runs = plan_matrix(args.configs, args.exports, args.seeds, args.work_dir, ROOT,
                       scratch=not args.no_scratch, gpus=args.gpus,
                       cfg_options=args.cfg_options, transform_options=args.transform_options,
                       init_key=args.init_key)
    if args.dry_run:
        for run in runs:
            print(f'[{run.state()}] ' + ' '.join(shlex.quote(c) for c in run.cmd))
        return None
    table = run_matrix(runs, args.work_dir, gpus=args.gpus, cfg_options=args.cfg_options,
                       metric=args.metric, select=args.select)
    print((Path(args.work_dir) / 'results.md').read_text())
    return table


if __name__ == '__main__':
    main()
