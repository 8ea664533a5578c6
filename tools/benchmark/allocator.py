"""Benchmark glibc's default malloc policy against `retain_freed_memory()` on VoteNet (CPU).

Each policy runs in its own fresh process (the policy is process-wide), on the same data:

1. a training step of the backbone of mmdet3d's unmodified VoteNet (`PointNet2SASSG` from
   `votenet_8xb8_scannet-3d.py`; forward, a loss on its features, backward, AdamW), batch
   8 x 20,000 points;
2. an inference of the same model on one 40,000-point scene.

It prints a markdown table: wall, user and system CPU time, minor page faults (each is a 4 KiB
page the kernel had to hand out and zero), the best of ``--repeat`` after warm-up steps, the
process's peak resident memory after each part (training runs first), then the ratios. Usage:

    python tools/benchmark/allocator.py [--repeat 3] [--threads 2] [--scene FILE.bin]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--scene', type=Path, default=None,
                        help='a ScanNet points .bin (6 float32 per point)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeat, args.threads, args.scene)
        return
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
