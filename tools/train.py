"""Train a model from a config, with mmdet3d's command-line interface.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--transform-options TYPE.k=v ...]
                                 [--launcher pytorch]

CONFIG may be a package config (mmdet3d::votenet/votenet_8xb8_scannet-3d.py). The set-up is
concept_distill.engine.cli's (shared with tools/test.py).
"""
from __future__ import annotations

import argparse
import os

from concept_distill.engine.cli import (
    add_override_arguments,
    apply_train_options,
    build_runner,
    load_config,
    prepare_config,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """mmdet3d's train.py arguments, plus ``--trust-checkpoint``."""
    parser = argparse.ArgumentParser(description='Train a 3D model (ConceptDistill)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--sync_bn', choices=['none', 'torch', 'mmcv'], default='none',
                        help='convert all BatchNorm layers to SyncBatchNorm')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the real batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT; without a value, from the latest checkpoint in the work dir')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='load `load_from` with weights_only=False (only for files from your own runs)')
    add_override_arguments(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    cfg = apply_train_options(prepare_config(load_config(args.config), args), args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
