"""Training-step time and inference throughput of the object-track models on the CPU.

    python tools/benchmark/objects.py [--batch-size 32] [--iters 3] [--warmup 1]
        [--threads N] [--models classifier part_segmentor] [--out result.json]
        [--cfg-options model.backbone.depth=4 ...]

Builds the classifier of configs/classification/ppt-12x384_1xb32-300e_modelnet40-1k.py
(1,024 points) and the part segmentor of configs/part_segmentation/
ppt-12x384_1xb32-300e_shapenet-part.py (2,048 points), both on the paper-size point-patch
transformer (12 blocks x 384), and feeds them a batch of synthetic objects (chairs, tables,
...; tools/create_object_data.py's generator) packed by the configs' own transforms. A
training step is the data preprocessor, forward, loss, backward and an AdamW step (the
recipe's optimiser); inference is `mode='predict'` under no_grad. Times are wall-clock
medians over `--iters` after `--warmup`; the process CPU time (all threads) is reported too.
Prints a markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_UNDER_TEST = dict(
    classifier=(REPO_ROOT / 'configs' / 'classification' /
                'ppt-12x384_1xb32-300e_modelnet40-1k.py', 1024),
    part_segmentor=(REPO_ROOT / 'configs' / 'part_segmentation' /
                    'ppt-12x384_1xb32-300e_shapenet-part.py', 2048),
)
CLASSES = ('chair', 'table', 'sofa', 'bed')


def object_batch(num_points: int, batch_size: int, seed: int = 0) -> list[dict]:
    """`batch_size` packed samples (PackObjectInputs) of synthetic objects, normalised."""
    from concept_distill.datasets.converters.synthetic.objects import (
        global_part_ids,
        make_object,
    )
    from concept_distill.datasets.object_datasets import NormalizeObjectPoints, PackObjectInputs

    parts = global_part_ids(CLASSES)
    objects = [make_object(c, 1, seed, num_points=num_points) for c in CLASSES]
    pack, norm = PackObjectInputs(), NormalizeObjectPoints()
    out = []
    for i in range(batch_size):
        o = objects[i % len(objects)]
        item = dict(points=o.xyz.copy(), gt_label=CLASSES.index(o.class_name),
                    part_labels=np.asarray(parts[o.class_name])[o.part],
                    category=CLASSES.index(o.class_name), part_ids=parts[o.class_name],
                    sample_idx=i)
        out.append(pack(norm(item)))
    return out


def build(config: Path, cfg_options: dict | None) -> torch.nn.Module:
    """The config's model (classes / parts sized for the synthetic batch)."""
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401
    from concept_distill.datasets.converters.synthetic.objects import global_part_ids

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(config))
    if cfg.model.type == 'PointPartSegmentor':
        parts = global_part_ids(CLASSES)
        cfg.model.update(num_categories=len(CLASSES),
                         num_parts=max(max(v) for v in parts.values()) + 1)
    else:
        cfg.model.num_classes = len(CLASSES)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def benchmark(name: str, batch_size: int, iters: int, warmup: int,
              cfg_options: dict | None = None) -> dict:
    """Median training-step seconds and inference samples/s of one model."""
    config, num_points = MODELS_UNDER_TEST[name]
    model = build(config, cfg_options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    batch = object_batch(num_points, batch_size)
    collate = dict(inputs=dict(points=[b['inputs']['points'] for b in batch]),
                   data_samples=[b['data_samples'] for b in batch])
    train, train_cpu, infer, infer_cpu = [], [], [], []
    for it in range(warmup + iters):
        model.train()
        c0, t0 = time.process_time(), time.perf_counter()
        data = model.data_preprocessor(collate, True)
        losses = model(**data, mode='loss')
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        c1, t1 = time.process_time(), time.perf_counter()
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(collate, False)
            preds = model(**data, mode='predict')
        c2, t2 = time.process_time(), time.perf_counter()
        assert len(preds) == batch_size and torch.isfinite(loss)
        if it >= warmup:
            train.append(t1 - t0)
            train_cpu.append(c1 - c0)
            infer.append(t2 - t1)
            infer_cpu.append(c2 - c1)
    return dict(model=name, config=str(config.relative_to(REPO_ROOT)), num_points=num_points,
                batch_size=batch_size, iters=iters, warmup=warmup,
                num_params=sum(p.numel() for p in model.parameters()),
                train_step_s=statistics.median(train),
                train_step_cpu_s=statistics.median(train_cpu),
                inference_s=statistics.median(infer),
                inference_cpu_s=statistics.median(infer_cpu),
                inference_samples_per_s=batch_size / statistics.median(infer),
                threads=torch.get_num_threads(),
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                cpu=platform.processor() or platform.machine())


def to_markdown(results: list[dict]) -> str:
    """One row per model."""
    lines = ['| model | points | batch | params | train step (s) | inference (samples/s) | '
             'CPU time train / inference (s) | threads | reps |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in results:
        lines.append(f"| {r['model']} | {r['num_points']} | {r['batch_size']} | "
                     f"{r['num_params'] / 1e6:.1f} M | {r['train_step_s']:.2f} | "
                     f"{r['inference_samples_per_s']:.1f} | {r['train_step_cpu_s']:.1f} / "
                     f"{r['inference_cpu_s']:.1f} | {r['threads']} | "
                     f"{r['iters']} (+{r['warmup']} warm-up) |")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', choices=list(MODELS_UNDER_TEST),
                        default=list(MODELS_UNDER_TEST))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='model overrides (e.g. a smaller backbone for a quick check)')
    parser.add_argument('--out', default=None, help='write the results as JSON here')
    args = parser.parse_args(argv)
    from concept_distill.engine import retain_freed_memory

    retain_freed_memory()  # the allocator policy tools/train.py runs with
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = [benchmark(m, args.batch_size, args.iters, args.warmup, args.cfg_options)
               for m in args.models]
    print(f'torch {torch.__version__}; {args.iters} timed iterations after {args.warmup} '
          'warm-up (median)')
    print(to_markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
