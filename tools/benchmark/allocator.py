"""Benchmark glibc's default malloc policy against `retain_freed_memory()` on VoteNet (CPU).

Each policy runs in its own fresh process (the policy is process-wide), on the same data:

1. a training step of the backbone of mmdet3d's unmodified VoteNet (`PointNet2SASSG` from
   `votenet_8xb8_scannet-3d.py`; forward, a loss on its features, backward, AdamW), batch
   8 x 20,000 points;
2. an inference of the same model on one 40,000-point scene.

It prints a markdown table: wall, user and system CPU time, minor page faults (each is a 4 KiB
page the kernel had to hand out and zero), the best of ``--repeat`` after warm-up steps, the
process's peak resident memory after each part (training runs first), then the ratios.

``--part workers`` measures dataloader workers instead: the main process grows its heap as a
training step does (``--heap-mib`` of tensors allocated, then freed), then forks 2 workers
that each fetch 40 paired-frame-sized items (a 40k-point scene, a 480x640 image, 8192 kept
points); each worker reports its resident and private memory, under glibc's default, under
the policy inherited by the workers (the former behaviour) and under the policy in the main
process only (the default now: workers restore glibc's default at fork). Usage:

    python tools/benchmark/allocator.py [--part votenet|workers|all] [--repeat 3]
        [--threads 2] [--scene FILE.bin] [--heap-mib 2048]

Without ``--scene`` the points come from a synthetic room (tools/create_data.py synthetic).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {'glibc default': '0', 'retain_freed_memory()': '1'}
# name -> (environment switch, policy inherited by forked workers)
WORKER_POLICIES = {'glibc default': ('0', False),
                   'retained, inherited by workers (former)': ('1', True),
                   'retained in the main process only (default)': ('1', False)}


def _scene_points(scene: Path | None):
    import numpy as np

    if scene is not None:
        return np.fromfile(scene, dtype=np.float32).reshape(-1, 6)[:, :3]
    from concept_distill.datasets.converters.synthetic import generate_scenes

    (room,) = generate_scenes(1, 0, 1, 60000, (48, 64))
    return room.points[:, :3].astype(np.float32)


def _measure(fn, repeat: int) -> dict:
    """Best-of-`repeat` wall time and that run's user/sys seconds and minor faults."""
    fn()  # warm-up: numba compilation, the allocator reaching its working size
    fn()
    best = None
    for _ in range(repeat):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        row = dict(wall=t1 - t0, user=r1.ru_utime - r0.ru_utime,
                   sys=r1.ru_stime - r0.ru_stime, faults=r1.ru_minflt - r0.ru_minflt)
        if best is None or row['wall'] < best['wall']:
            best = row
    return best


def child(repeat: int, threads: int, scene: Path | None) -> None:
    """In a fresh process (policy already set by the parent's environment): print JSON."""
    import numpy as np
    import torch
    from mmdet3d.registry import MODELS
    from mmdet3d.structures import DepthInstance3DBoxes, Det3DDataSample
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    import concept_distill  # noqa: F401  (CPU op dispatch)
    from concept_distill.engine.cpu_allocator import retain_freed_memory

    applied = retain_freed_memory()
    torch.set_num_threads(threads)
    register_all_modules(init_default_scope=True)
    import mmdet3d

    cfg = Config.fromfile(str(Path(mmdet3d.__file__).parent / '.mim' / 'configs' / 'votenet' /
                              'votenet_8xb8_scannet-3d.py'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    pts = _scene_points(scene)
    rng = np.random.default_rng(0)

    def sample(n: int) -> torch.Tensor:
        xyz = pts[rng.choice(len(pts), n, replace=len(pts) < n)]
        height = xyz[:, 2:3] - np.percentile(xyz[:, 2], 0.99)
        return torch.from_numpy(np.concatenate([xyz, height], 1).astype(np.float32))

    batch = [sample(20000) for _ in range(8)]
    backbone = model.backbone
    optim = torch.optim.AdamW(backbone.parameters(), lr=1e-4)

    def train_step() -> None:
        out = backbone(torch.stack(batch))
        loss = sum(f.mean() for f in out['fp_features']) + sum(
            f.mean() for f in out['sa_features'][1:])
        optim.zero_grad()
        loss.backward()
        optim.step()

    backbone.train()
    train = _measure(train_step, repeat)
    train['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.eval()
    scene40k = sample(40000)

    def predict() -> None:
        meta = Det3DDataSample(metainfo=dict(box_type_3d=DepthInstance3DBoxes))
        with torch.no_grad():
            model.predict({'points': [scene40k]}, [meta])

    infer = _measure(predict, repeat)
    infer['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(applied=applied, train=train, infer=infer)))


def _own_memory() -> dict:
    """This process's resident and private memory now, and its resident peak (MiB)."""
    out = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(('VmRSS:', 'VmHWM:')):
            out[line.split(':')[0]] = int(line.split()[1]) / 1024
    private = 0
    for line in Path('/proc/self/smaps_rollup').read_text().splitlines():
        if line.startswith(('Private_Clean:', 'Private_Dirty:')):
            private += int(line.split()[1])
    return dict(rss=out['VmRSS'], peak=out['VmHWM'], private=private / 1024)


class _PairedLikeItems:
    """Items allocating what a paired-frame pipeline does (scene, image, kept points)."""

    def __len__(self) -> int:
        return 80

    def __getitem__(self, i: int):
        import numpy as np

        rng = np.random.default_rng(i)
        scene = rng.random((40000, 6), dtype=np.float32)  # LoadScenePoints
        img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)  # LoadPairedImage
        uv = scene[:, :2] @ np.float32([[640, 0], [0, 480]])  # FrustumPointPairing
        keep = np.flatnonzero((uv[:, 0] < 640) & (uv[:, 1] < 480))
        pick = rng.choice(keep, 8192, replace=len(keep) < 8192)
        return dict(points=scene[pick].copy(), img=img[::2, ::2].copy(), worker=_own_memory())


def workers_child(heap_mib: int, in_children: bool) -> None:
    """In a fresh process: grow the heap like a training step, then fork 2 workers."""
    import torch

    from concept_distill.engine.cpu_allocator import retain_freed_memory

    applied = retain_freed_memory(in_children=in_children)
    # A step's live set: many large tensors at once, then all freed (the heap keeps them).
    blocks = [torch.ones(16 * 2**20 // 4) for _ in range(heap_mib // 16)]
    del blocks
    loader = torch.utils.data.DataLoader(_PairedLikeItems(), batch_size=2, num_workers=2,
                                         collate_fn=lambda b: b,
                                         multiprocessing_context='fork')
    reports = [item['worker'] for batch in loader for item in batch][-4:]  # both workers'
    print(json.dumps(dict(applied=applied, main=_own_memory(),
                          worker=dict(rss=max(r['rss'] for r in reports),
                                      peak=max(r['peak'] for r in reports),
                                      private=max(r['private'] for r in reports)))))


def run_workers(args) -> None:
    """The worker-memory table."""
    results = {}
    for name, (switch, inherit) in WORKER_POLICIES.items():
        cmd = [sys.executable, __file__, '--child-workers', '--heap-mib', str(args.heap_mib)]
        if inherit:
            cmd.append('--inherit')
        env = dict(os.environ, CONCEPT_DISTILL_RETAIN_MEMORY=switch, PYTHONWARNINGS='ignore')
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    print(f'Machine: {platform.machine()}, {os.cpu_count()} cores; main process heap grown '
          f'to {args.heap_mib} MiB then freed; 2 forked workers, 40 items each.\n')
    print('| malloc policy | main RSS (MiB) | worker RSS (MiB) | worker peak RSS (MiB) | '
          'worker private (MiB) |')
    print('| --- | ---: | ---: | ---: | ---: |')
    for name, r in results.items():
        w = r['worker']
        print(f'| {name} | {r["main"]["rss"]:,.0f} | {w["rss"]:,.0f} | {w["peak"]:,.0f} | '
              f'{w["private"]:,.0f} |')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--part', choices=['votenet', 'workers', 'all'], default='all')
    parser.add_argument('--heap-mib', type=int, default=2048)
    parser.add_argument('--child-workers', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--inherit', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--scene', type=Path, default=None,
                        help='a ScanNet points .bin (6 float32 per point)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeat, args.threads, args.scene)
        return
    if args.child_workers:
        workers_child(args.heap_mib, args.inherit)
        return
    if args.part in ('workers', 'all'):
        run_workers(args)
        if args.part == 'workers':
            return
        print()
    if args.scene is not None and not args.scene.is_file():
        raise SystemExit(f'scene not found: {args.scene}')
    results = {}
    for name, switch in POLICIES.items():
        cmd = [sys.executable, __file__, '--child', '--repeat', str(args.repeat),
               '--threads', str(args.threads)]
        if args.scene is not None:
            cmd += ['--scene', str(args.scene)]
        env = dict(os.environ, CONCEPT_DISTILL_RETAIN_MEMORY=switch, PYTHONWARNINGS='ignore')
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        if results[name]['applied'] != (switch == '1'):
            raise SystemExit(f'the policy "{name}" did not take effect (no glibc here?): '
                             'the comparison would be meaningless')
    print(f'Machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; '
          f'best of {args.repeat}; points: {args.scene or "synthetic room"}.\n')
    print('| VoteNet on CPU | malloc policy | wall (s) | user (s) | sys (s) | minor faults | '
          'peak RSS so far (MiB) |')
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: |')
    for task, label in (('train', 'backbone train step, 8 x 20k pts'),
                        ('infer', 'inference, 40k pts')):
        for name, res in results.items():
            r = res[task]
            print(f'| {label} | {name} | {r["wall"]:.2f} | {r["user"]:.2f} | {r["sys"]:.2f} | '
                  f'{r["faults"]:,} | {r["peak_mib"]:,.0f} |')
    base, ours = results['glibc default'], results['retain_freed_memory()']
    print('\nspeed-up (wall, glibc default / retain): train '
          f'{base["train"]["wall"] / ours["train"]["wall"]:.2f}x, infer '
          f'{base["infer"]["wall"] / ours["infer"]["wall"]:.2f}x')


if __name__ == '__main__':
    main()
