"""Shared pieces of the tools: config overrides and runner choice (train/test), progress bars
(create_data/extract_teacher_features)."""
from __future__ import annotations

import argparse
import contextlib
import os.path as osp
from collections.abc import Callable, Iterator

from mmdet3d.registry import RUNNERS
from mmengine.config import Config
from mmengine.runner import Runner


def prepare_config(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line overrides mmdet3d's tools apply, in the same order."""
    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401  (registers components; installs CPU op dispatch)
    from concept_distill.engine import retain_freed_memory

    retain_freed_memory()  # 2.3x faster CPU training steps; docs/benchmarks.md

    register_all_modules(init_default_scope=False)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'trust_checkpoint', False):
        cfg.trust_checkpoint = True
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Build the config's runner; by default the project's ``ConceptDistillRunner``."""
    cfg.setdefault('runner_type', 'ConceptDistillRunner')
    return RUNNERS.build(cfg)


@contextlib.contextmanager
def progress_bar(desc: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar (on stderr, with time left) driven by `progress(done, total)` callbacks.

    The first call may carry work already done (a resumed cache): it becomes the bar's
    starting point, so the rate and the time left measure only what this run does. A call
    with a new total, or a count that goes back, starts the next phase on the same bar.
    """
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit) as bar:
        def progress(done: int, total: int) -> None:
            if bar.total != total or done < bar.n:  # a resumed start, or the next phase
                bar.reset(total=total)
                bar.initial = bar.n = bar.last_print_n = done
            bar.update(done - bar.n)

        yield progress
