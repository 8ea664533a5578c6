"""Evaluate a checkpoint, with mmdet3d's command-line interface.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                                           [--transform-options TYPE.k=v ...]

CONFIG may be a package config (mmdet3d::...). The set-up is concept_distill.engine.cli's
(shared with tools/train.py).
"""
from __future__ import annotations

import argparse
import os

from concept_distill.engine.cli import (
    add_override_arguments,
    build_runner,
    load_config,
    prepare_config,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """mmdet3d's test.py arguments, plus ``--trust-checkpoint``."""
    parser = argparse.ArgumentParser(description='Test (evaluate) a 3D model (ConceptDistill)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation results and logs')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='load the checkpoint with weights_only=False: needed for full mmengine training '
        'checkpoints of your own runs (they pickle the message hub)')
    add_override_arguments(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> dict:
    """Entry point; returns the metrics."""
    args = parse_args(argv)
    cfg = prepare_config(load_config(args.config), args)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
