"""Run the frozen teacher once over every frame of a pre-training config and cache its outputs.

    python tools/extract_teacher_features.py CONFIG [--cache-dir DIR] [--splits train val]
        [--tokens none|patch|prefix] [--batch-size 16] [--device auto|cpu|cuda] [--workers N]
        [--teacher-key model.teacher] [--cfg-options k=v ...] [--transform-options TYPE.k=v ...]
    torchrun --nproc_per_node 8 tools/extract_teacher_features.py CONFIG ...   # 8 shares

The cache (float16 memory-mapped .npy + index.json, no pickle) is keyed by the teacher's
`cache_key()` (model name, weights digest, image size/mean/std, resize, precision, mapping)
and the image preprocessing; a killed run resumes where it stopped. Without --cache-dir, the
cache_dir of the config's LoadTeacherFeatures transform is used. A teacher without weights
is refused unless the config sets model.allow_random_teacher=True. See
docs/data_preparation.md.
"""
from __future__ import annotations

import argparse
import json
import sys

from concept_distill.engine.cli import (
    add_override_arguments,
    apply_overrides,
    config_value,
    load_config,
    setup_process,
    teacher_cache_dir,
)
from concept_distill.engine.progress import progress_bar


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description='Cache teacher features of paired frames')
    parser.add_argument('config', help='pre-training config (paired dataloaders + teacher)')
    parser.add_argument('--cache-dir', default=None)
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--tokens', choices=['none', 'patch', 'prefix'], default='none',
                        help='also cache one token set')
    parser.add_argument('--batch-size', type=int, default=16, help='frames per batch')
    parser.add_argument('--device', default='auto',
                        help="'auto': this process's GPU when there is one, else the CPU")
    parser.add_argument('--workers', type=int, default=0,
                        help='dataloader processes decoding the images')
    parser.add_argument('--teacher-key', default='model.teacher',
                        help='where the teacher config sits in the config')
    add_override_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Extract (or resume) and print a JSON summary."""
    args = parse_args(argv)
    setup_process(init_default_scope=True)
    from concept_distill.datasets.converters.teacher_extraction import (
        extract_teacher_features,
        refuse_random_teacher,
    )

    cfg = apply_overrides(load_config(args.config), args)
    cache_dir = args.cache_dir or teacher_cache_dir(cfg)
    if cache_dir is None:
        sys.exit('no --cache-dir and no LoadTeacherFeatures(cache_dir=...) in the config')
    teacher = config_value(cfg, args.teacher_key)
    refuse_random_teacher(cfg, teacher)
    with progress_bar('teacher features', 'frame') as progress:
        summary = extract_teacher_features(
            cfg, cache_dir, tuple(args.splits), teacher, args.tokens, args.batch_size,
            args.device, progress=progress, workers=args.workers)
    print(json.dumps({k: v for k, v in summary.items() if k != 'key'}, indent=1))
    return summary


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:  # the extraction has said where it stopped: no traceback
        sys.exit(130)
