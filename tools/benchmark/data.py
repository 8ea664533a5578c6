"""Benchmark paired data and the teacher-feature cache (GitHub issue 5, item 6).

Prints markdown tables (and writes them with ``--out``):

1. data throughput, one process: JPEG decoding alone (full size, and at the reduced DCT
   scale training uses), against whole paired samples (points + image + depth, pairing,
   resize, 3D augmentation, packing) with the online teacher's pixels, and with the cache
   (images not decoded);
2. one pre-training step (forward, backward, optimizer step) of the ConceptDistiller around
   VoteNet's PointNet2SASSG: with cached teacher features, with the online ViT-B/16 teacher,
   and the student alone (backbone + concept extractor, no teacher, no alignment loss), in
   the same run on the same batches, interleaved round by round.

The data are synthetic ScanNet-format scenes at ScanNet-like sizes (generated into
``--work-dir``); the teacher is open_clip's ViT-B/16 (random weights unless ``--clip-weights``).

Usage:
    python tools/benchmark/data.py [--work-dir work_dirs/bench_data] [--batch-size 8]
        [--num-points 8192] [--steps 5] [--samples 48] [--device cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PAIRED_CFG = REPO / 'configs/_base_/datasets/scannet-paired.py'
MODEL_CFG = REPO / 'configs/_base_/models/pointnet2-sassg_concept-distill.py'


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/bench_data')
    p.add_argument('--scenes', type=int, default=2)
    p.add_argument('--frames', type=int, default=12, help='frames per scene')
    p.add_argument('--points-per-scene', type=int, default=100000)
    p.add_argument('--image-size', type=int, nargs=2, default=(480, 640))
    p.add_argument('--samples', type=int, default=48, help='samples per throughput row')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num-points', type=int, default=8192)
    p.add_argument('--steps', type=int, default=5, help='timed rounds of the three steps')
    p.add_argument('--clip-weights', default=None)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=None, help='also write the tables to this file')
    return p.parse_args()


def _build_dataset(cfg, root: Path, pipeline: list):
    from mmdet3d.registry import DATASETS

    ds = copy.deepcopy(cfg.train_dataloader.dataset)
    ds.update(data_root=str(root), pipeline=pipeline)
    return DATASETS.build(ds)


def _rate(fn, n: int) -> float:
    fn(0)  # warm-up (first-call imports, page cache)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def throughput(cfg, root: Path, cache: Path, teacher_cfg: dict, n: int) -> list[tuple]:
    """Samples per second of each data path (one process, one torch thread)."""
    ds_img = _build_dataset(cfg, root, cfg.train_pipeline)
    paths = [ds_img.get_data_info(i)['img_path'] for i in range(len(ds_img))]

    def decode(i: int) -> None:
        with Image.open(paths[i % len(paths)]) as im:
            np.asarray(im.convert('RGB'))

    def decode_draft(i: int) -> None:
        with Image.open(paths[i % len(paths)]) as im:
            im.draft('RGB', (224, 224))
            np.asarray(im.convert('RGB'))

    cached_pipeline = copy.deepcopy(cfg.train_pipeline)
    cached_pipeline[1] = dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
    cached_pipeline.insert(-1, dict(type='LoadTeacherFeatures', cache_dir=str(cache),
                                    teacher=teacher_cfg,
                                    preprocessing=cfg.image_preprocessing))
    ds_cache = _build_dataset(cfg, root, cached_pipeline)
    rows = [('JPEG decode alone, full size', _rate(decode, n)),
            ('JPEG decode alone, DCT-scaled for 224 px', _rate(decode_draft, n)),
            ('paired sample, online teacher (image decoded)',
             _rate(lambda i: ds_img[i % len(ds_img)], n)),
            ('paired sample, cached teacher (image not decoded)',
             _rate(lambda i: ds_cache[i % len(ds_cache)], n))]
    return rows


def _batches(ds, model, batch_size: int, count: int) -> list[dict]:
    from mmengine.dataset import pseudo_collate

    out = []
    for b in range(count):
        items = [ds[(b * batch_size + j) % len(ds)] for j in range(batch_size)]
        out.append(model.data_preprocessor(pseudo_collate(items), training=True))
    return out


def step_times(cfg, model_cfg, root: Path, cache: Path, args) -> dict[str, list[float]]:
    """Seconds per training step of the three variants, interleaved round by round."""
    from mmdet3d.registry import MODELS
    from mmengine.optim import OptimWrapper

    model = MODELS.build(model_cfg).to(args.device)
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
    pipeline = [t for t in cfg.train_pipeline if t['type'] != 'RandomFlip3D']
    cached_pipeline = copy.deepcopy(pipeline)
    cached_pipeline[1] = dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
    cached_pipeline.insert(-1, dict(type='LoadTeacherFeatures', cache_dir=str(cache),
                                    teacher=model_cfg['teacher'],
                                    preprocessing=cfg.image_preprocessing))
    n_batches = args.steps + 1
    online = _batches(_build_dataset(cfg, root, pipeline), model, args.batch_size, n_batches)
    cached = _batches(_build_dataset(cfg, root, cached_pipeline), model, args.batch_size,
                      n_batches)

    def sync() -> None:
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()

    def student_alone(batch: dict) -> None:
        concepts = model.extract_concepts(batch['inputs'], batch['data_samples'])
        optim.update_params(concepts.square().mean())

    def with_loss(batch: dict) -> None:
        losses = model.loss(batch['inputs'], batch['data_samples'])
        optim.update_params(sum(v for k, v in losses.items() if k.startswith('loss')))

    variants = {'student alone (no teacher, no loss)': (student_alone, cached),
                'cached teacher features': (with_loss, cached),
                'online ViT-B/16 teacher': (with_loss, online)}
    times = {k: [] for k in variants}
    for fn, batches in variants.values():  # warm-up
        fn(batches[0])
    for r in range(args.steps):
        for name, (fn, batches) in variants.items():
            sync()
            start = time.perf_counter()
            fn(batches[1 + r])
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args()
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401  (registers components)
    from concept_distill.datasets import create_synthetic_scannet
    from concept_distill.datasets.converters.teacher_extraction import extract_teacher_features
    from concept_distill.engine import retain_freed_memory

    retain_freed_memory()  # the allocator policy tools/train.py runs with
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    np.random.seed(0)
    work = Path(args.work_dir)
    root, cache = work / 'data', work / 'teacher_cache'
    if not (root / 'scannet_infos_train.pkl').is_file():
        summary = create_synthetic_scannet(root, args.scenes, 0, args.frames,
                                           args.points_per_scene, tuple(args.image_size),
                                           val_scenes=1)
        print(f"generated {summary['num_frames']} frames in {summary['seconds']} s")

    cfg = Config.fromfile(str(PAIRED_CFG))
    for t in cfg.train_pipeline:
        if t['type'] == 'FrustumPointPairing':
            t['num_points'] = args.num_points
    model_cfg = Config.fromfile(str(MODEL_CFG)).model
    model_cfg.teacher.pretrained = args.clip_weights
    cfg.train_dataloader.dataset.data_root = str(root)
    cfg.val_dataloader.dataset.data_root = str(root)
    cfg.model = dict(teacher=model_cfg.teacher)
    t0 = time.perf_counter()
    ex = extract_teacher_features(cfg, str(cache), splits=('train',), device=args.device)
    extract_s = time.perf_counter() - t0

    torch.set_num_threads(1)  # dataloader workers run single-threaded
    rows = throughput(cfg, root, cache, model_cfg.teacher, args.samples)
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', os.cpu_count() or 1)))
    times = step_times(cfg, model_cfg, root, cache, args)

    machine = (f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
               f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
               f'device {args.device}')
    lines = [f'Machine: {machine}. Data: {args.scenes} synthetic scenes, '
             f'{args.points_per_scene} points each, {args.image_size[0]}x{args.image_size[1]} '
             f'RGB-D frames; {args.num_points} points per pair.', '',
             '| data path (1 process, 1 thread) | samples/s |', '| --- | --- |']
    lines += [f'| {name} | {rate:.1f} |' for name, rate in rows]
    base = statistics.median(times['student alone (no teacher, no loss)'])
    lines += ['', f'Teacher-feature extraction: {ex["frames"]} frames in {extract_s:.1f} s '
              f'({ex["frames"] / extract_s:.1f} frames/s, ViT-B/16, batch 16).', '',
              f'| pre-training step, batch {args.batch_size} (median of {args.steps}) '
              '| s/step | vs student alone |', '| --- | --- | --- |']
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f'| {name} | {med:.3f} | {med / base:.2f}x |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')


if __name__ == '__main__':
    main()
