"""Benchmark paired data and the teacher-feature cache (GitHub issue 5, item 6).

Prints markdown tables (and writes them with ``--out``):

1. data throughput, one process (GitHub issue 15): JPEG decoding alone (full size, at the
   reduced DCT scale training uses, and at the teacher's size), against whole paired samples
   (points + image + depth, pairing, resize, 3D augmentation, packing) with the online
   teacher's pixels and with the cache (images not decoded), each with today's online
   pairing and with pairs precomputed by `create_data.py pairs`, each 3D-augmented by
   mmdet3d's chain (GlobalAlignment, RandomFlip3D, GlobalRotScaleTrans: "today") or by the
   fused `PairedPointAugment` the pre-training configs use; and the floor: reading the kept
   points of one frame and its cached teacher row, nothing else. Also the preparation's
   speed, whether the paths give the same samples, and the storage per frame against other
   encodings of the same pairs;
2. one pre-training step (forward, backward, optimizer step) of the ConceptDistiller around
   VoteNet's PointNet2SASSG: with cached teacher features, with the online ViT-B/16 teacher,
   and the student alone (backbone + concept extractor, no teacher, no alignment loss), in
   the same run on the same batches, interleaved round by round.

The data are synthetic ScanNet-format scenes at ScanNet-like sizes (generated into
``--work-dir``); the teacher is open_clip's ViT-B/16 (random weights unless ``--clip-weights``).

Usage:
    python tools/benchmark/data.py [--work-dir work_dirs/bench_data] [--batch-size 8]
        [--num-points 8192] [--steps 5] [--samples 48] [--rounds 5]
        [--sections data steps] [--device cpu] [--out FILE]
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
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/bench_data')
    p.add_argument('--scenes', type=int, default=2)
    p.add_argument('--frames', type=int, default=12, help='frames per scene')
    p.add_argument('--points-per-scene', type=int, default=100000)
    p.add_argument('--image-size', type=int, nargs=2, default=(480, 640))
    p.add_argument('--samples', type=int, default=48, help='samples per throughput round')
    p.add_argument('--rounds', type=int, default=5,
                   help='throughput rounds (every data path once per round, interleaved)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num-points', type=int, default=8192)
    p.add_argument('--steps', type=int, default=5, help='timed rounds of the three steps')
    p.add_argument('--sections', nargs='+', default=['data', 'steps'],
                   choices=['data', 'steps'],
                   help='data: throughput and storage; steps: pre-training steps')
    p.add_argument('--clip-weights', default=None)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=None, help='also write the tables to this file')
    return p.parse_args()


def _build_dataset(cfg, root: Path, pipeline: list):
    from mmdet3d.registry import DATASETS

    ds = copy.deepcopy(cfg.train_dataloader.dataset)
    # serialize_data=False: mmengine's serialisation runs gc.collect (about 1 s in a process
    # holding torch and mmdet3d), which is set-up, not data loading.
    ds.update(data_root=str(root), pipeline=pipeline, serialize_data=False)
    return DATASETS.build(ds)


def _pipeline(cfg, precomputed: bool, cache: Path | None = None,
              teacher_cfg: dict | None = None, fused: bool = False) -> list:
    """The training pipeline: precomputed or online pairing; cached teacher when `cache`;
    mmdet3d's 3D augmentation chain, or PairedPointAugment with its parameters when `fused`."""
    from concept_distill.datasets.transforms.paired_point_augment import (
        fuse_point_augmentations,
    )

    pipeline = copy.deepcopy(cfg.train_pipeline)
    if fused:
        pipeline = fuse_point_augmentations(pipeline)
    pipeline[0]['precomputed_pairs'] = precomputed
    if cache is not None:
        pipeline[1] = dict(type='LoadPairedImage', with_pixels=False, with_depth=True)
        pipeline.insert(-1, dict(type='LoadTeacherFeatures', cache_dir=str(cache),
                                 teacher=teacher_cfg, preprocessing=cfg.image_preprocessing))
    return pipeline


def _rates(paths: dict, n: int, rounds: int) -> dict[str, float]:
    """Median samples/s of each path over `rounds` rounds; the paths take turns each round,
    so a change of machine load hits them all alike."""
    for fn in paths.values():  # warm-up (first-call imports, page cache, memory maps)
        for i in range(4):
            fn(i)
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(rounds):
        for name, fn in paths.items():
            count, start = 0, time.perf_counter()
            while True:  # at least n samples and 0.2 s, so fast paths are timed long enough
                for i in range(n):
                    fn(r * n + count + i)
                count += n
                elapsed = time.perf_counter() - start
                if elapsed >= 0.2:
                    break
            rates[name].append(count / elapsed)
    return {k: statistics.median(v) for k, v in rates.items()}


def _floor_files(ds, work: Path, num_points: int) -> list[tuple[Path, str]]:
    """Per frame, a file holding just its `num_points` points (load_dim floats each): what
    the floor reads."""
    from concept_distill.datasets.frame_pairs import pairs_path, read_frame_pairs

    out = work / 'floor'
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        _, visible = read_frame_pairs(pairs_path(info['img_path']))
        pts = np.fromfile(info['lidar_points']['lidar_path'], dtype=np.float32).reshape(-1, 6)
        path = out / f'{i}.bin'
        np.take(pts, np.resize(visible, num_points), axis=0).tofile(path)
        files.append((path, info['frame_id']))
    return files


def throughput(cfg, root: Path, cache: Path, work: Path, teacher_cfg: dict,
               args) -> list[tuple]:
    """Samples per second of each data path (one process, one torch thread), with ratios."""
    from concept_distill.datasets.teacher_cache import TeacherFeatureCache

    online_img = _build_dataset(cfg, root, _pipeline(cfg, False))
    pre_img = _build_dataset(cfg, root, _pipeline(cfg, True))
    online_cache = _build_dataset(cfg, root, _pipeline(cfg, False, cache, teacher_cfg))
    pre_cache = _build_dataset(cfg, root, _pipeline(cfg, True, cache, teacher_cfg))
    pre_img_fused = _build_dataset(cfg, root, _pipeline(cfg, True, fused=True))
    online_cache_fused = _build_dataset(cfg, root, _pipeline(cfg, False, cache, teacher_cfg,
                                                             fused=True))
    pre_cache_fused = _build_dataset(cfg, root, _pipeline(cfg, True, cache, teacher_cfg,
                                                          fused=True))
    # The precomputed pipeline up to pairing only: what the 3D augmentations and packing add.
    pre_pairing = _build_dataset(cfg, root, _pipeline(cfg, True, cache, teacher_cfg)[:4])
    paths = [online_img.get_data_info(i)['img_path'] for i in range(len(online_img))]
    th, tw = cfg.teacher_image_size
    floor = _floor_files(pre_cache, work, args.num_points)
    teacher_rows = TeacherFeatureCache(cache)

    def decode(i: int) -> None:
        with Image.open(paths[i % len(paths)]) as im:
            np.asarray(im.convert('RGB'))

    def decode_draft(i: int) -> None:
        with Image.open(paths[i % len(paths)]) as im:
            im.draft('RGB', (tw, th))
            np.asarray(im.convert('RGB'))

    def decode_teacher_size(i: int) -> None:
        # What the online teacher needs at the least: the JPEG at its smallest DCT scale
        # covering the teacher's input, resized to it (bicubic, as ResizeCropForTeacher).
        with Image.open(paths[i % len(paths)]) as im:
            im.draft('RGB', (tw, th))
            np.asarray(im.convert('RGB').resize((tw, th), Image.BICUBIC))

    def floor_read(i: int) -> None:
        path, frame_id = floor[i % len(floor)]
        np.fromfile(path, dtype=np.float32)
        teacher_rows.get(frame_id)

    def sample(ds):
        return lambda i: ds[i % len(ds)]

    rates = _rates({
        'decode': decode, 'draft': decode_draft, 'teacher_size': decode_teacher_size,
        'online_img': sample(online_img), 'pre_img': sample(pre_img),
        'online_cache': sample(online_cache), 'pre_cache': sample(pre_cache),
        'pre_pairing': sample(pre_pairing), 'floor': floor_read,
        'pre_img_fused': sample(pre_img_fused), 'online_cache_fused': sample(online_cache_fused),
        'pre_cache_fused': sample(pre_cache_fused)}, args.samples, args.rounds)
    r = rates
    return [
        ('JPEG decode alone, full size', r['decode'], ''),
        ('JPEG decode alone, DCT-scaled for 224 px', r['draft'], ''),
        ('JPEG decode at the teacher\'s size (DCT-scaled + bicubic resize to 224x224)',
         r['teacher_size'], ''),
        ('online teacher, online pairing (today: points + image + depth, pairing, resize, '
         '3D aug, pack)', r['online_img'],
         f"{r['teacher_size'] / r['online_img']:.2f}x slower than decoding at the teacher's size"),
        ('online teacher, **precomputed pairs**', r['pre_img'],
         f"{r['pre_img'] / r['online_img']:.1f}x today; {r['teacher_size'] / r['pre_img']:.2f}x "
         "slower than decoding at the teacher's size"),
        ('online teacher, precomputed pairs, **fused 3D aug**', r['pre_img_fused'],
         f"{r['pre_img_fused'] / r['online_img']:.1f}x today; "
         f"{r['teacher_size'] / r['pre_img_fused']:.2f}x slower than decoding at the teacher's "
         'size'),
        ('cached teacher, online pairing (today: image not decoded)', r['online_cache'], ''),
        ('cached teacher, online pairing, fused 3D aug', r['online_cache_fused'],
         f"{r['online_cache_fused'] / r['online_cache']:.1f}x today"),
        ('cached teacher, **precomputed pairs**', r['pre_cache'],
         f"{r['pre_cache'] / r['online_cache']:.1f}x today; "
         f"{r['floor'] / r['pre_cache']:.1f}x slower than the floor"),
        ('cached teacher, **precomputed pairs, fused 3D aug** (the pre-training configs)',
         r['pre_cache_fused'],
         f"{r['pre_cache_fused'] / r['online_cache']:.1f}x today; "
         f"{r['floor'] / r['pre_cache_fused']:.1f}x slower than the floor"),
        ('cached teacher, precomputed pairs, loading + pairing only (no 3D aug, no packing)',
         r['pre_pairing'], f"{r['floor'] / r['pre_pairing']:.1f}x slower than the floor"),
        (f'floor: read the {args.num_points} points of one frame (one file) + its cached '
         'teacher row', r['floor'], ''),
    ]


def storage(ds, root: Path) -> dict:
    """Bytes per frame of the pairs files, against other encodings of the same pairs (and
    the pixel error of the stored-pixel ones)."""
    from concept_distill.datasets.frame_pairs import pairs_path, read_frame_pairs
    from concept_distill.datasets.frustum_pairing import project

    files, n_vis, n_pts, err16, errfix = [], [], [], [], []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        path = pairs_path(info['img_path'])
        header, visible = read_frame_pairs(path)
        files.append(Path(path).stat().st_size)
        n_vis.append(len(visible))
        n_pts.append(header['scene']['num_points'])
        pts = np.fromfile(info['lidar_points']['lidar_path'], dtype=np.float32).reshape(-1, 6)
        uv = project(pts[visible], np.asarray(info['lidar2img']))[0].astype(np.float64)
        h, w = header['frame']['image_hw']
        err16.append(np.abs(uv.astype(np.float16).astype(np.float64) - uv).max())
        # Fixed point over the image: (u + 0.5) * 65535 / W in uint16 (resolution W / 65535).
        scale = np.array([65535 / w, 65535 / h])
        q = np.round((uv + 0.5) * scale).astype(np.uint16)
        errfix.append(np.abs((q / scale - 0.5) - uv).max())
    n, m = float(np.mean(n_vis)), float(np.mean(n_pts))
    return dict(frames=len(files), mean_visible=n, mean_scene_points=m,
                pairs_file_mean=float(np.mean(files)), pairs_file_max=int(max(files)),
                header_mean=float(np.mean(files)) - m / 8, uint32_idx=4 * n,
                uint32_f16=8 * n, uint32_fixed16=8 * n, err_f16=float(max(err16)),
                err_fixed16=float(max(errfix)))


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


def _same_pairs(cfg, root: Path, seed: int = 0) -> bool:
    """Whether online and precomputed pairing give the same sample for every frame."""
    online = _build_dataset(cfg, root, _pipeline(cfg, False))
    pre = _build_dataset(cfg, root, _pipeline(cfg, True))
    for i in range(len(online)):
        np.random.seed(seed + i)
        a = online[i]
        np.random.seed(seed + i)
        b = pre[i]
        if not (torch.equal(a['inputs']['points'], b['inputs']['points'])
                and torch.equal(a['inputs']['img'], b['inputs']['img'])
                and torch.allclose(a['data_samples'].pixel_uv, b['data_samples'].pixel_uv,
                                   rtol=0, atol=1e-4)):
            return False
    return True


def _fused_difference(cfg, root: Path, seed: int = 0) -> float:
    """Largest |fused - chain| over the packed points of every frame, same seed (pixels and
    images must be equal)."""
    chain = _build_dataset(cfg, root, _pipeline(cfg, True))
    fused = _build_dataset(cfg, root, _pipeline(cfg, True, fused=True))
    worst = 0.0
    for i in range(len(chain)):
        np.random.seed(seed + i)
        a = chain[i]
        np.random.seed(seed + i)
        b = fused[i]
        if not (torch.equal(a['inputs']['img'], b['inputs']['img'])
                and torch.equal(a['data_samples'].pixel_uv, b['data_samples'].pixel_uv)):
            return float('inf')
        worst = max(worst, (a['inputs']['points'] - b['inputs']['points']).abs().max().item())
    return worst


def data_tables(cfg, root: Path, cache: Path, work: Path, teacher_cfg: dict, args) -> list:
    """The data section: pairs preparation, throughput, storage (markdown lines)."""
    from concept_distill.datasets.converters.frame_pairing import precompute_frame_pairs

    for old in root.rglob('*.pairs'):  # time the preparation from scratch
        old.unlink()
    t0 = time.perf_counter()
    prep = precompute_frame_pairs(str(root), workers=1)
    prep_s = time.perf_counter() - t0
    same = _same_pairs(cfg, root)
    fused_diff = _fused_difference(cfg, root)
    torch.set_num_threads(1)  # dataloader workers run single-threaded
    rows = throughput(cfg, root, cache, work, teacher_cfg, args)
    st = storage(_build_dataset(cfg, root, _pipeline(cfg, True)), root)
    lines = [f'| data path (1 process, 1 torch thread; median of {args.rounds} interleaved '
             'rounds) | samples/s | ratio |', '| --- | ---: | --- |']
    lines += [f'| {name} | {rate:.1f} | {ratio} |' for name, rate, ratio in rows]
    lines += ['', f"Pairs preparation (`create_data.py pairs`, 1 thread): {prep['frames']} "
              f'frames in {prep_s:.2f} s ({prep["frames"] / prep_s:.0f} frames/s). Online and '
              f'precomputed samples identical on every frame (same seed): '
              f'{"yes" if same else "NO"}. Fused 3D aug against the chain (same seed, every '
              f'frame): images and pixels identical, points within {fused_diff:.2e} '
              '(float32 round-off).', '',
              f"| storage per frame (mean over {st['frames']} frames: "
              f"{st['mean_visible']:.0f} of {st['mean_scene_points']:.0f} points visible) "
              '| bytes | pixel error (px) |', '| --- | ---: | ---: |',
              f"| **stored: bitmask over the scene + header** (pixels projected at load) "
              f"| {st['pairs_file_mean']:.0f} (max {st['pairs_file_max']}; header "
              f"{st['header_mean']:.0f}) | 0 (float32, as online) |",
              f"| uint32 indices, no pixels | {st['uint32_idx']:.0f} | - |",
              f"| uint32 indices + float16 pixels | {st['uint32_f16']:.0f} "
              f"| {st['err_f16']:.3f} |",
              f"| uint32 indices + uint16 fixed-point pixels (W/65535 px) "
              f"| {st['uint32_fixed16']:.0f} | {st['err_fixed16']:.4f} |"]
    return lines


def main() -> None:
    """Generate the data, extract the teacher cache, run the chosen sections, print tables."""
    args = parse_args()
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401  (registers components)
    from concept_distill.datasets.converters import create_synthetic_scannet
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

    machine = (f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
               f'torch {torch.__version__}, device {args.device}')
    lines = [f'Machine: {machine}. Data: {args.scenes} synthetic scenes, '
             f'{args.points_per_scene} points each, {args.image_size[0]}x{args.image_size[1]} '
             f'RGB-D frames; {args.num_points} points per pair.', '',
             f'Teacher-feature extraction: {ex["frames"]} frames in {extract_s:.1f} s '
             f'({ex["frames"] / extract_s:.1f} frames/s, ViT-B/16, batch 16).', '']
    if 'data' in args.sections:
        lines += data_tables(cfg, root, cache, work, model_cfg.teacher, args) + ['']
    if 'steps' in args.sections:
        torch.set_num_threads(int(os.environ.get('BENCH_THREADS', os.cpu_count() or 1)))
        times = step_times(cfg, model_cfg, root, cache, args)
        base = statistics.median(times['student alone (no teacher, no loss)'])
        lines += [f'| pre-training step, batch {args.batch_size} (median of {args.steps}, '
                  f'{torch.get_num_threads()} threads) | s/step | vs student alone |',
                  '| --- | --- | --- |']
        for name, ts in times.items():
            med = statistics.median(ts)
            lines.append(f'| {name} | {med:.3f} | {med / base:.2f}x |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')


if __name__ == '__main__':
    main()
