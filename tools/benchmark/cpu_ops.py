"""Benchmark the CPU point operators at VoteNet's sizes (GitHub issue 3, item 4).

Prints markdown tables (and writes them with ``--out``):

1. each operator at VoteNet's sizes (batch 8, 20,000 input points, 2048/1024/512/256 samples,
   radii 0.2-1.2, 64/32/16/16 neighbours) next to a reference implementation timed in the same
   run (numpy FPS, scipy ``cKDTree`` neighbour queries, naive torch indexing, mmcv's own
   ``points_in_boxes_cpu``), and the ratio;
2. the share of a VoteNet backbone training step (forward + backward, batch 8, 20,000 points)
   spent in the point operators, from ``torch.profiler``;
3. VoteNet inference time and peak memory on the real 40k-point ScanNet scene;
4. the ball query's peak memory against the number of points (it must grow linearly).

Usage:
    python tools/benchmark/cpu_ops.py [--sections ops,train,infer,memory] [--repeat 3]
        [--scene ../shared/fixtures/real/scannet/scene0000_00.bin] [--out FILE]

Times are the best of ``--repeat`` runs after a warm-up (numba compiles on first call), on
``torch.get_num_threads()`` threads; peak memory is the resident-set high-water mark
(``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``) minus the resident set
before the call.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENE = REPO_ROOT.parent / 'shared' / 'fixtures' / 'real' / 'scannet' / \
    'scene0000_00.bin'
# VoteNet's PointNet2SASSG: (points in, samples, radius, neighbours, feature channels in).
SA_LEVELS = [(20000, 2048, 0.2, 64, 1), (2048, 1024, 0.4, 32, 128),
             (1024, 512, 0.8, 16, 256), (512, 256, 1.2, 16, 256)]
BATCH = 8


# ----------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------
def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    return best_times(fn, repeat)[0]


def best_times(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``repeat`` calls after a warm-up call.

    The CPU time (all threads) is the work done; on a shared machine the wall time also
    holds the time spent waiting for a core.
    """
    fn()
    best = (math.inf, math.inf)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak resident memory added while ``fn`` runs (MiB), from the kernel's high-water mark."""
    import gc
    gc.collect()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM to the current resident set
    before = _status_kb('VmRSS')
    fn()
    return (_status_kb('VmHWM') - before) / 1024


def load_scene(path: Path) -> np.ndarray:
    """x, y, z, height of the ScanNet scene, as VoteNet's LoadPointsFromFile(shift_height)."""
    xyz = np.fromfile(path, dtype=np.float32).reshape(-1, 6)[:, :3]
    height = xyz[:, 2] - np.percentile(xyz[:, 2], 0.99)
    return np.concatenate([xyz, height[:, None]], 1).astype(np.float32)


def scene_batch(scene: np.ndarray, n: int, batch: int, seed: int = 0) -> torch.Tensor:
    """``batch`` samplings of the scene, each rotated about z (as training augmentation)."""
    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(batch):
        pts = scene[rng.choice(len(scene), n, replace=len(scene) < n)].copy()
        a = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
        pts[:, :2] = pts[:, :2] @ rot.T
        clouds.append(pts)
    return torch.from_numpy(np.stack(clouds))


# ----------------------------------------------------------------------------------------------
# Reference implementations (timed in the same run as ours)
# ----------------------------------------------------------------------------------------------
def ref_fps_numpy(xyz: np.ndarray, m: int) -> np.ndarray:
    """Textbook FPS, vectorised over points with numpy, one cloud at a time."""
    out = np.zeros((xyz.shape[0], m), dtype=np.int64)
    for b, pts in enumerate(xyz):
        temp = np.full(len(pts), 1e10, dtype=np.float32)
        old = 0
        for j in range(1, m):
            d = pts - pts[old]
            np.minimum(temp, np.einsum('ij,ij->i', d, d), out=temp)
            old = int(temp.argmax())
            out[b, j] = old
    return out


def ref_fps_dist_numpy(dist: np.ndarray, m: int) -> np.ndarray:
    out = np.zeros((dist.shape[0], m), dtype=np.int64)
    for b, d in enumerate(dist):
        temp = np.full(d.shape[0], 1e10, dtype=np.float32)
        old = 0
        for j in range(1, m):
            np.minimum(temp, d[old], out=temp)
            old = int(temp.argmax())
            out[b, j] = old
    return out


def ref_ball_query_kdtree(xyz: np.ndarray, ctr: np.ndarray, r: float, s: int) -> np.ndarray:
    """scipy cKDTree ball query, first ``s`` indices in index order, padded like mmcv."""
    from scipy.spatial import cKDTree
    out = np.zeros(ctr.shape[:2] + (s,), dtype=np.int64)
    for b in range(xyz.shape[0]):
        hits = cKDTree(xyz[b]).query_ball_point(ctr[b], r, return_sorted=True)
        for j, h in enumerate(hits):
            if h:
                h = h[:s]
                out[b, j] = h[0]
                out[b, j, :len(h)] = h
    return out


def ref_knn_kdtree(xyz: np.ndarray, ctr: np.ndarray, k: int) -> np.ndarray:
    from scipy.spatial import cKDTree
    return np.stack([cKDTree(xyz[b]).query(ctr[b], k)[1] for b in range(xyz.shape[0])])


def ref_gather_torch(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Naive advanced indexing: (B, C, N), (B, ...) -> (B, C, ...)."""
    b = torch.arange(features.shape[0]).view(-1, *([1] * (idx.dim() - 1)))
    return features.transpose(1, 2)[b, idx.long()].movedim(-1, 1)


def ref_three_interpolate_torch(features, idx, weight) -> torch.Tensor:
    """Naive: materialise (B, C, N, 3) and sum."""
    return (ref_gather_torch(features, idx) * weight[:, None]).sum(-1)


def ref_points_in_boxes_part(points, boxes) -> torch.Tensor:
    from mmcv.ops import points_in_boxes_cpu
    inside = points_in_boxes_cpu(points, boxes)
    return torch.where(inside.any(-1), inside.argmax(-1), -1)


# ----------------------------------------------------------------------------------------------
# 1. Operator table
# ----------------------------------------------------------------------------------------------
def bench_ops(scene: np.ndarray, repeat: int) -> list[str]:
    from mmcv.ops import (
        ball_query,
        furthest_point_sample,
        furthest_point_sample_with_dist,
        gather_points,
        grouping_operation,
        knn,
        points_in_boxes_cpu,
        three_interpolate,
        three_nn,
    )
    boxes_mod = importlib.import_module('mmcv.ops.points_in_boxes')

    rows = []

    def row(op: str, size: str, ours: Callable, ref: Callable, ref_name: str) -> None:
        t_ours, t_ref = best_time(ours, repeat), best_time(ref, repeat)
        rows.append(f'| {op} | {size} | {t_ours * 1e3:.1f} | {ref_name} | {t_ref * 1e3:.1f} '
                    f'| {t_ref / t_ours:.1f}x |')
        print(rows[-1], flush=True)

    points = scene_batch(scene, SA_LEVELS[0][0], BATCH)
    xyz = points[..., :3].contiguous()
    level_xyz = [xyz]
    for n_in, m, r, s, c in SA_LEVELS:
        cur = level_xyz[-1]
        assert cur.shape[1] == n_in
        idx = furthest_point_sample(cur, m)
        ctr = gather_points(cur.transpose(1, 2).contiguous(), idx).transpose(1, 2).contiguous()
        level_xyz.append(ctr)
        cur_np, ctr_np = cur.numpy(), ctr.numpy()
        size = f'B={BATCH}, N={n_in}, M={m}'
        row('furthest_point_sample', size, lambda cur=cur, m=m: furthest_point_sample(cur, m),
            lambda cur_np=cur_np, m=m: ref_fps_numpy(cur_np, m), 'numpy FPS')
        size = f'B={BATCH}, N={n_in}, M={m}, r={r}, S={s}'
        row('ball_query', size,
            lambda r=r, s=s, cur=cur, ctr=ctr: ball_query(0.0, r, s, cur, ctr),
            lambda r=r, s=s, a=cur_np, c_=ctr_np: ref_ball_query_kdtree(a, c_, r, s),
            'scipy cKDTree')
        grp = ball_query(0.0, r, s, cur, ctr)
        feats = torch.randn(BATCH, c + 3, n_in, requires_grad=True)
        size = f'B={BATCH}, C={c + 3}, N={n_in}, M={m}, S={s}'

        def fwd_bwd(fn, feats=feats, grp=grp):
            out = fn(feats, grp)
            out.backward(torch.ones_like(out))

        row('grouping_operation fwd+bwd', size, lambda f=fwd_bwd: f(grouping_operation),
            lambda f=fwd_bwd: f(ref_gather_torch), 'torch indexing + autograd')

    # gather_points of SA1's centres with 64 channels, fwd + bwd.
    feats = torch.randn(BATCH, 64, 20000, requires_grad=True)
    idx = furthest_point_sample(xyz, 2048)

    def gather_fwd_bwd(fn):
        out = fn(feats, idx)
        out.backward(torch.ones_like(out))

    row('gather_points fwd+bwd', f'B={BATCH}, C=64, N=20000, M=2048',
        lambda: gather_fwd_bwd(gather_points), lambda: gather_fwd_bwd(ref_gather_torch),
        'torch indexing + autograd')
    # Feature propagation: SA4 -> SA3 (256 -> 512) and SA3 -> SA2 (512 -> 1024), 256 channels.
    for src, tgt in [(level_xyz[4], level_xyz[3]), (level_xyz[3], level_xyz[2])]:
        size = f'B={BATCH}, N={tgt.shape[1]}, M={src.shape[1]}'
        t_np, s_np = tgt.numpy(), src.numpy()
        row('three_nn', size, lambda t=tgt, s=src: three_nn(t, s),
            lambda t=t_np, s=s_np: ref_knn_kdtree(s, t, 3), 'scipy cKDTree')
        dist, nn_idx = three_nn(tgt, src)
        w = 1.0 / (dist + 1e-8)
        w = (w / w.sum(2, keepdim=True)).contiguous()
        feats = torch.randn(BATCH, 256, src.shape[1], requires_grad=True)

        def interp(fn, feats=feats, nn_idx=nn_idx, w=w):
            out = fn(feats, nn_idx, w)
            out.backward(torch.ones_like(out))

        row('three_interpolate fwd+bwd', f'{size}, C=256', lambda f=interp: f(three_interpolate),
            lambda f=interp: f(ref_three_interpolate_torch), 'torch (B,C,N,3) + autograd')
    # Full-resolution upsampling (PointNet++ segmentation): 20,000 targets from 2048 sources.
    t_np, s_np = xyz.numpy(), level_xyz[1].numpy()
    row('three_nn', f'B={BATCH}, N=20000, M=2048', lambda: three_nn(xyz, level_xyz[1]),
        lambda: ref_knn_kdtree(s_np, t_np, 3), 'scipy cKDTree')
    row('knn (k=16)', f'B={BATCH}, N=20000, M=2048',
        lambda: knn(16, xyz, level_xyz[1], False),
        lambda: ref_knn_kdtree(xyz.numpy(), level_xyz[1].numpy(), 16), 'scipy cKDTree')
    # F-FPS style sampling from a feature-distance matrix (mmcv's PointsSampler).
    sub = level_xyz[2]
    dist = (torch.cdist(sub, sub) ** 2).contiguous()
    row('furthest_point_sample_with_dist', f'B={BATCH}, N=1024, M=512',
        lambda: furthest_point_sample_with_dist(dist, 512),
        lambda: ref_fps_dist_numpy(dist.numpy(), 512), 'numpy FPS')
    # Box membership as VoteNet's targets use it: the scene's points against 32 boxes.
    rng = np.random.default_rng(0)
    boxes = torch.from_numpy(np.concatenate(
        [rng.uniform(-3, 3, (BATCH, 32, 2)), rng.uniform(0, 1, (BATCH, 32, 1)),
         rng.uniform(0.3, 2.0, (BATCH, 32, 3)), np.zeros((BATCH, 32, 1))], -1).astype(np.float32))
    size = f'B={BATCH}, N=20000, T=32'
    row('points_in_boxes_all', size, lambda: boxes_mod.points_in_boxes_all(xyz, boxes),
        lambda: points_in_boxes_cpu(xyz, boxes), "mmcv's points_in_boxes_cpu")
    row('points_in_boxes_part', size, lambda: boxes_mod.points_in_boxes_part(xyz, boxes),
        lambda: ref_points_in_boxes_part(xyz, boxes), "mmcv's points_in_boxes_cpu + argmax")
    header = ['| operator | size | ours (ms) | reference | reference (ms) | speed-up |',
              '| --- | --- | ---: | --- | ---: | ---: |']
    return header + rows


# ----------------------------------------------------------------------------------------------
# 2. Share of a VoteNet backbone training step spent in the point operators
# ----------------------------------------------------------------------------------------------
def votenet_config():
    import mmdet3d
    from mmengine.config import Config
    path = Path(mmdet3d.__file__).parent / '.mim' / 'configs' / 'votenet' / \
        'votenet_8xb8_scannet-3d.py'
    return Config.fromfile(str(path))


def bench_train_share(scene: np.ndarray, repeat: int) -> list[str]:
    from mmdet3d.registry import MODELS
    from torch.profiler import ProfilerActivity, profile

    from concept_distill.ops import PROFILE_PREFIX

    torch.manual_seed(0)
    backbone = MODELS.build(votenet_config().model.backbone).train()
    points = scene_batch(scene, 20000, BATCH)

    def step() -> None:
        backbone.zero_grad()
        out = backbone(points)
        loss = sum(f.mean() for f in out['fp_features']) + sum(
            f.mean() for f in out['sa_features'][1:])
        loss.backward()

    t_step, t_step_cpu = best_times(step, repeat)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        t_prof = time.perf_counter() - start
    per_op: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key.startswith(PROFILE_PREFIX):
            per_op[evt.key[len(PROFILE_PREFIX):]] = evt.cpu_time_total / 1e6
    t_ops = sum(per_op.values())
    lines = [f'Backbone step (forward + backward, batch {BATCH}, 20,000 points): '
             f'**{t_step:.2f} s** wall, {t_step_cpu:.2f} s CPU (best of {repeat}); profiled step '
             f'{t_prof:.2f} s, of which point operators **{t_ops:.2f} s = '
             f'{100 * t_ops / t_prof:.1f}%**.', '',
             '| point operator | s in the profiled step | share |', '| --- | ---: | ---: |']
    for name, t in sorted(per_op.items(), key=lambda kv: -kv[1]):
        lines.append(f'| {name} | {t:.3f} | {100 * t / t_prof:.1f}% |')
    for line in lines:
        print(line, flush=True)
    return lines


# ----------------------------------------------------------------------------------------------
# 3. VoteNet inference on the real scene
# ----------------------------------------------------------------------------------------------
def bench_inference(scene: np.ndarray, scene_path: Path, repeat: int) -> list[str]:
    from mmdet3d.registry import MODELS
    from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample
    from torch.profiler import ProfilerActivity, profile

    from concept_distill.ops import PROFILE_PREFIX

    torch.manual_seed(0)
    model = MODELS.build(votenet_config().model).eval()
    points = scene_batch(scene, 40000, 1, seed=1)[0]  # VoteNet's test-time PointSample(40000)

    def predict():
        sample = Det3DDataSample(metainfo=dict(box_type_3d=DepthInstance3DBoxes))
        with torch.no_grad():
            return model.predict({'points': [points]}, [sample])

    t, t_cpu = best_times(predict, repeat)
    peak = _child_peak(['infer', '40000', str(scene_path)])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        predict()
        t_prof = time.perf_counter() - start
    t_ops = sum(e.cpu_time_total for e in prof.key_averages()
                if e.key.startswith(PROFILE_PREFIX)) / 1e6
    lines = [f'VoteNet inference on the real scene (40,000 points, batch 1, '
             f'{torch.get_num_threads()} threads): **{t:.3f} s** wall, {t_cpu:.3f} s CPU (best '
             f'of {repeat}); peak memory **+{peak:.0f} MiB** over the loaded model; point '
             f'operators {100 * t_ops / t_prof:.0f}% of a profiled run ({t_ops:.3f} s).']
    print(lines[0], flush=True)
    return lines


# ----------------------------------------------------------------------------------------------
# 4. Ball query memory against the number of points
# ----------------------------------------------------------------------------------------------
def _child_peak(args: list[str]) -> float:
    """Run ``--child ARGS`` of this script in a fresh process; return the peak it prints.

    A fresh process with ``MALLOC_MMAP_THRESHOLD_`` set returns every freed large block to the
    system, so the kernel's high-water mark measures this allocation alone rather than
    blocks reused from earlier work.
    """
    import subprocess
    import sys
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run([sys.executable, __file__, '--child', *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def child_main(kind: str, n: int, scene_path: Path) -> None:
    """In a fresh process: peak memory (MiB) of one operation, printed on the last line."""
    import concept_distill  # noqa: F401
    scene = load_scene(scene_path)
    if kind == 'ball_query':
        from mmcv.ops import ball_query, furthest_point_sample
        xyz = scene_batch(scene, n, BATCH)[..., :3].contiguous()
        ctr_idx = furthest_point_sample(xyz[:, :20000].contiguous(), 2048).long()
        ctr = torch.gather(xyz, 1, ctr_idx[..., None].expand(-1, -1, 3)).contiguous()
        ball_query(0.0, 0.2, 64, xyz, ctr)  # compile / load the kernels first
        peak = peak_memory_mb(lambda: ball_query(0.0, 0.2, 64, xyz, ctr))
    else:  # VoteNet inference on the 40k-point scene
        from mmdet3d.registry import MODELS
        from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample
        from mmdet3d.utils import register_all_modules
        register_all_modules(init_default_scope=True)
        torch.manual_seed(0)
        model = MODELS.build(votenet_config().model).eval()
        points = scene_batch(scene, n, 1, seed=1)[0]

        def predict():
            sample = Det3DDataSample(metainfo=dict(box_type_3d=DepthInstance3DBoxes))
            with torch.no_grad():
                model.predict({'points': [points]}, [sample])

        predict()
        peak = peak_memory_mb(predict)
    print(f'{peak:.2f}')


def bench_memory(scene_path: Path) -> list[str]:
    lines = ['| points N | centres M | ball query peak (MiB) | a dense B x M x N float32 '
             'distance matrix (MiB) |', '| ---: | ---: | ---: | ---: |']
    for n in (20000, 40000, 80000, 160000):
        peak = _child_peak(['ball_query', str(n), str(scene_path)])
        dense = BATCH * 2048 * n * 4 / 2**20
        lines.append(f'| {n} | 2048 | {peak:.1f} | {dense:.0f} |')
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sections', default='ops,train,infer,memory')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch (and numba) threads; default: torch\'s default')
    parser.add_argument('--scene', type=Path, default=DEFAULT_SCENE)
    parser.add_argument('--out', type=Path, default=None, help='write the markdown here')
    parser.add_argument('--child', nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_main(args.child[0], int(args.child[1]), Path(args.child[2]))
        return

    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401  (installs the CPU dispatch)
    from concept_distill.engine import retain_freed_memory
    retain_freed_memory()  # the allocator policy tools/train.py runs with
    register_all_modules(init_default_scope=True)

    if not args.scene.is_file():
        raise SystemExit(f'scene not found: {args.scene} (pass --scene)')
    scene = load_scene(args.scene)
    sections = args.sections.split(',')
    header = (f'Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
              f'torch {torch.__version__} on {torch.get_num_threads()} threads.')
    print(header, flush=True)
    out = [header, '']
    runners = {'ops': lambda: bench_ops(scene, args.repeat),
               'train': lambda: bench_train_share(scene, args.repeat),
               'infer': lambda: bench_inference(scene, args.scene, args.repeat),
               'memory': lambda: bench_memory(args.scene)}
    for name in sections:
        out += runners[name]() + ['']
    if args.out:
        args.out.write_text('\n'.join(out))


if __name__ == '__main__':
    main()
