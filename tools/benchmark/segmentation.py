"""Forward/backward time and peak memory of the sparse-conv segmentation model on one scene.

    python tools/benchmark/segmentation.py [--config CFG] [--num-points 100000]
        [--devices cpu cuda] [--iters 3] [--warmup 1] [--out result.json]

Builds the model of a segmentation config (default: MinkUNet34 spconv on ScanNet, 2 cm voxels),
makes a synthetic room of ``--num-points`` coloured points (walls, floor and furniture boxes
sampled uniformly, so the voxel count is like a real scan of that size), and times one
training step (voxelisation, forward, loss, backward) and one inference pass per device.
Times are wall-clock medians; the CPU time of the process (all threads) is reported too, as
the work done regardless of what else shares the machine. CPU memory is the process's peak
resident set size (and its growth during the benchmark);
CUDA memory is ``torch.cuda.max_memory_allocated``. Prints a markdown table and writes JSON.
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
DEFAULT_CONFIG = (REPO_ROOT / 'configs' / 'minkunet' /
                  'minkunet34_w32_spconv_8xb2-cosine-200e_scannet-seg.py')


def synthetic_room(num_points: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """A box room (8 x 6 x 3 m) with furniture boxes: (N, 6) x,y,z,r,g,b (0-255), labels (N,)."""
    rng = np.random.default_rng(seed)
    size = np.array([8.0, 6.0, 3.0])
    # (axis held fixed, its value, label): floor, two pairs of walls
    planes = [(2, 0.0, 1), (0, 0.0, 0), (0, size[0], 0), (1, 0.0, 0), (1, size[1], 0)]
    boxes = [(rng.uniform([0.5, 0.5, 0], [6.5, 4.5, 0]), rng.uniform([0.4, 0.4, 0.4],
                                                                      [1.5, 1.5, 1.2]), k + 2)
             for k in range(8)]
    n_planes = num_points * 2 // 3
    idx = rng.integers(0, len(planes), n_planes)
    xyz = rng.uniform(0, 1, (n_planes, 3)) * size
    labels = np.empty(n_planes, dtype=np.int64)
    for p, (axis, value, label) in enumerate(planes):
        sel = idx == p
        xyz[sel, axis] = value
        labels[sel] = label
    n_box = num_points - n_planes
    b = rng.integers(0, len(boxes), n_box)
    box_xyz = np.empty((n_box, 3))
    box_labels = np.empty(n_box, dtype=np.int64)
    for k, (origin, extent, label) in enumerate(boxes):
        sel = b == k
        pts = rng.uniform(0, 1, (int(sel.sum()), 3)) * extent
        face = rng.integers(0, 5, len(pts))  # 4 sides + top
        axis = np.minimum(face // 2, 2)
        side = np.where(face == 4, 1.0, (face % 2).astype(float))
        pts[np.arange(len(pts)), axis] = side * extent[axis]
        box_xyz[sel] = pts + origin
        box_labels[sel] = min(label, num_classes - 1)
    xyz = np.concatenate([xyz, box_xyz])
    labels = np.concatenate([labels, box_labels])
    palette = rng.integers(0, 256, (num_classes, 3))
    rgb = np.clip(palette[labels] + rng.normal(0, 10, (num_points, 3)), 0, 255)
    return np.concatenate([xyz, rgb], 1).astype(np.float32), labels


def build_model(config: str, device: str) -> torch.nn.Module:
    """The config's model on ``device``."""
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401  (CPU voxelisation + spconv dispatch)

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device)


def make_batch(points: np.ndarray, labels: np.ndarray, device: str) -> dict:
    """A one-scene batch as the dataloader gives it (colours normalised to 0-1)."""
    from mmdet3d.structures import Det3DDataSample, PointData

    pts = torch.from_numpy(points.copy())
    pts[:, 3:] /= 255.0
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(pts_semantic_mask=torch.from_numpy(labels).to(device))
    return dict(inputs=dict(points=[pts.to(device)]), data_samples=[sample])


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark(config: str, device: str, points: np.ndarray, labels: np.ndarray, iters: int,
              warmup: int) -> dict:
    """Median seconds of a training step and an inference pass, and peak memory, on device."""
    model = build_model(config, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    rss_before = _rss_mib()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    train_times, voxel_times, infer_times, num_voxels = [], [], [], 0
    train_cpu, infer_cpu = [], []
    for it in range(warmup + iters):
        model.train()
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        data = model.data_preprocessor(make_batch(points, labels, device), training=True)
        _sync(device)
        t1 = time.perf_counter()
        losses = model(**data, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        c2, t2 = time.process_time(), time.perf_counter()
        num_voxels = int(data['inputs']['voxels']['coors'].shape[0])
        model.eval()
        with torch.no_grad():
            _sync(device)
            c3, t3 = time.process_time(), time.perf_counter()
            data = model.data_preprocessor(make_batch(points, labels, device), training=False)
            preds = model(**data, mode='predict')
            _sync(device)
            c4, t4 = time.process_time(), time.perf_counter()
        assert preds[0].pred_pts_seg.pts_semantic_mask.shape[0] == len(points)
        if it >= warmup:
            voxel_times.append(t1 - t0)
            train_times.append(t2 - t0)
            infer_times.append(t4 - t3)
            train_cpu.append(c2 - c0)
            infer_cpu.append(c4 - c3)
    result = dict(
        device=device,
        num_points=len(points),
        num_voxels=num_voxels,
        num_params=sum(p.numel() for p in model.parameters()),
        voxelize_s=statistics.median(voxel_times),
        train_step_s=statistics.median(train_times),
        inference_s=statistics.median(infer_times),
        # CPU time of the process (all threads): the work done, whatever else shares the CPU
        train_step_cpu_s=statistics.median(train_cpu),
        inference_cpu_s=statistics.median(infer_cpu),
    )
    if device.startswith('cuda'):
        result['peak_mem_mib'] = torch.cuda.max_memory_allocated() / 2**20
        result['device_name'] = torch.cuda.get_device_name()
    else:
        result['peak_rss_mib'] = _rss_mib()
        result['rss_growth_mib'] = _rss_mib() - rss_before
        result['threads'] = torch.get_num_threads()
        result['device_name'] = platform.processor() or platform.machine()
    return result


def to_markdown(results: list[dict]) -> str:
    """One table row per device."""
    lines = ['| device | points | voxels | train step (s) | inference (s) | voxelise (s) | '
             'CPU time train / inference (s) | peak memory |',
             '|---|---|---|---|---|---|---|---|']
    for r in results:
        if 'peak_mem_mib' in r:
            mem = f"{r['peak_mem_mib']:.0f} MiB (CUDA max allocated)"
        else:
            mem = (f"{r['peak_rss_mib']:.0f} MiB peak RSS "
                   f"(+{r['rss_growth_mib']:.0f} MiB during the run)")
        dev = r['device'] if r['device'] != 'cpu' else f"cpu ({r['threads']} threads)"
        lines.append(f"| {dev} | {r['num_points']} | {r['num_voxels']} | "
                     f"{r['train_step_s']:.2f} | {r['inference_s']:.2f} | "
                     f"{r['voxelize_s']:.3f} | {r['train_step_cpu_s']:.2f} / "
                     f"{r['inference_cpu_s']:.2f} | {mem} |")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=str(DEFAULT_CONFIG))
    parser.add_argument('--num-points', type=int, default=100_000)
    parser.add_argument('--devices', nargs='+', default=None,
                        help='default: cpu, and cuda when available')
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='write the results as JSON here')
    args = parser.parse_args(argv)

    from mmengine.config import Config

    from concept_distill.engine import retain_freed_memory

    retain_freed_memory()  # the allocator policy tools/train.py runs with
    num_classes = Config.fromfile(args.config).model.decode_head.num_classes
    devices = args.devices or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    points, labels = synthetic_room(args.num_points, num_classes, args.seed)
    results = []
    for device in devices:
        torch.manual_seed(args.seed)
        results.append(benchmark(args.config, device, points, labels, args.iters, args.warmup))
    print(f'config: {Path(args.config).name}; torch {torch.__version__}; '
          f'{args.iters} timed iterations after {args.warmup} warm-up (median)')
    print(to_markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
