"""ScanNet-scale rehearsal: the paired dataset and the teacher cache at full ScanNet size.

Generates, in a temporary folder (deleted afterwards unless --keep), mmdet3d v2 info files
for ``--scenes`` scenes x ``--frames`` posed frames each (metadata only: no point, image or
depth file), then measures

1. building the recipe's `PairedFrameDataset` (configs/_base_/datasets/scannet-paired.py,
   train split, ``frame_stride`` 10 as the pre-training configs): seconds and the main
   process's resident memory before and after;
2. the memory of each of ``--workers`` forked dataloader workers reading frame infos
   (resident, and private: what a worker holds that is not shared with the main process);
3. a teacher-feature cache with one row per frame (float16 global embeddings of width
   ``--dim``, no token set): seconds to write it, bytes on disk, seconds to open it (file
   checks + the frame index, as `LoadTeacherFeatures` does) and random single-row reads per
   second (``--reads`` rows, as a shuffled epoch reads them), in the main process.

It prints a markdown table. Usage:

    python tools/benchmark/scannet_scale.py [--scenes 1513] [--frames 80] [--dim 512]
        [--workers 4] [--reads 20000] [--tmp DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def own_memory() -> dict:
    """This process's resident and private memory (MiB)."""
    rss = private = 0
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            rss = int(line.split()[1])
    for line in Path('/proc/self/smaps_rollup').read_text().splitlines():
        if line.startswith(('Private_Clean:', 'Private_Dirty:')):
            private += int(line.split()[1])
    return dict(rss=rss / 1024, private=private / 1024)


def write_infos(root: Path, scenes: int, frames: int, seed: int = 0) -> tuple[Path, int]:
    """ScanNet-format train infos (docs/architecture.md) for `scenes` x `frames`."""
    rng = np.random.default_rng(seed)
    k = [[577.6, 0.0, 319.5, 0.0], [0.0, 578.7, 239.5, 0.0], [0.0, 0.0, 1.0, 0.0],
         [0.0, 0.0, 0.0, 1.0]]
    data_list = []
    for s in range(scenes):
        scene = f'scene{s // 3:04d}_{s % 3:02d}'
        poses = np.tile(np.eye(4), (frames, 1, 1))
        poses[:, :3, 3] = rng.uniform(0, 8, size=(frames, 3))
        data_list.append(dict(
            lidar_points=dict(lidar_path=f'{scene}.bin', num_pts_feats=6),
            pts_semantic_mask_path=f'{scene}.bin', pts_instance_mask_path=f'{scene}.bin',
            axis_align_matrix=np.eye(4).tolist(), instances=[],
            frames=[dict(frame_id=f'{scene}/{20 * i:06d}',
                         img_path=f'posed_images/{scene}/{20 * i:06d}.jpg',
                         depth_path=f'posed_images/{scene}/{20 * i:06d}.png',
                         cam2img=k, depth2img=k, cam2global=poses[i].tolist())
                    for i in range(frames)]))
    path = root / 'scannet_infos_train.pkl'
    path.write_bytes(pickle.dumps(dict(metainfo=dict(dataset='scannet'), data_list=data_list)))
    return path, path.stat().st_size


class _InfoProbe:
    """A worker's view of the dataset: frame infos read (no file opened), memory reported."""

    def __init__(self, dataset, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        info = self.dataset.get_data_info((i * 7919) % len(self.dataset))
        return dict(frame_id=info['frame_id'], memory=own_memory())


def disk_bytes(folder: Path) -> int:
    """Bytes the folder's files occupy on disk (allocated blocks)."""
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scenes', type=int, default=1513)
    parser.add_argument('--frames', type=int, default=80)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument('--reads', type=int, default=20000)
    parser.add_argument('--tmp', default=None, help='where the temporary folder goes')
    parser.add_argument('--keep', action='store_true', help='keep the generated files')
    args = parser.parse_args()

    import torch
    from mmdet3d.registry import DATASETS
    from mmengine.config import Config

    from concept_distill.engine.cli import setup_process

    setup_process(init_default_scope=True)
    from concept_distill.datasets.teacher_cache import TeacherFeatureCache

    repo = Path(__file__).resolve().parents[2]
    root = Path(tempfile.mkdtemp(prefix='scannet_scale_', dir=args.tmp))
    rows = []
    try:
        t0 = time.perf_counter()
        info_path, info_bytes = write_infos(root, args.scenes, args.frames)
        rows.append(('info file (pickle)', f'{args.scenes:,} scenes x {args.frames} frames',
                     f'{info_bytes / 2**20:,.0f} MiB, written in {time.perf_counter() - t0:.1f} s'))

        cfg = Config.fromfile(str(repo / 'configs/_base_/datasets/scannet-paired.py'))
        ds_cfg = dict(cfg.train_dataloader.dataset, data_root=str(root), frame_stride=10)
        before = own_memory()
        t0 = time.perf_counter()
        dataset = DATASETS.build(ds_cfg)
        build_s = time.perf_counter() - t0
        after = own_memory()
        rows.append(('dataset build (frame_stride 10)',
                     f'{dataset.num_frames:,} frames, {len(dataset):,} per epoch',
                     f'{build_s:.1f} s; main RSS {before["rss"]:,.0f} -> {after["rss"]:,.0f} MiB'))
        t0 = time.perf_counter()
        dataset.set_epoch(1)
        len(dataset)
        rows.append(('next epoch\'s frame selection', f'{len(dataset):,} frames',
                     f'{1000 * (time.perf_counter() - t0):.0f} ms'))

        loader = torch.utils.data.DataLoader(
            _InfoProbe(dataset, 64 * args.workers), batch_size=8, num_workers=args.workers,
            collate_fn=lambda b: b, multiprocessing_context='fork')
        reports = [item['memory'] for batch in loader for item in batch]
        rss = max(r['rss'] for r in reports)
        private = max(r['private'] for r in reports)
        rows.append((f'dataloader worker ({args.workers} forked)',
                     '64 frame infos read each',
                     f'RSS {rss:,.0f} MiB, private {private:,.0f} MiB (max over workers)'))

        n = dataset.num_frames
        frame_ids = [dataset.get_frame_info(i)['frame_id'] for i in range(n)]
        cache_dir = root / 'teacher_cache'
        key = dict(teacher=dict(model_name='rehearsal'), preprocessing=None)
        t0 = time.perf_counter()
        cache, _ = TeacherFeatureCache.create_or_resume(cache_dir, key, frame_ids, args.dim)
        rng = np.random.default_rng(0)
        chunk = 4096
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            cache.write_rows(lo, rng.standard_normal((hi - lo, args.dim), dtype=np.float32),
                             np.ones(hi - lo, dtype=bool))
        write_s = time.perf_counter() - t0
        size = disk_bytes(cache_dir)
        rows.append(('teacher cache write', f'{n:,} rows x {args.dim} float16 (no tokens)',
                     f'{write_s:.1f} s; {size / 2**20:,.0f} MiB on disk'))

        t0 = time.perf_counter()
        reader = TeacherFeatureCache(cache_dir)
        reader.check_complete()
        reader.is_valid(frame_ids[0])  # memory maps + the frame index
        open_s = time.perf_counter() - t0
        rows.append(('teacher cache open', 'file checks + frame index',
                     f'{1000 * open_s:.0f} ms'))
        picks = rng.integers(0, n, args.reads)
        t0 = time.perf_counter()
        for i in picks:
            reader.get(frame_ids[i])
        read_s = time.perf_counter() - t0
        rows.append(('teacher cache random reads', f'{args.reads:,} single rows',
                     f'{args.reads / read_s:,.0f} rows/s ({1e6 * read_s / args.reads:.1f} us '
                     'each)'))
    finally:
        if args.keep:
            print(f'kept: {root}')
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f'Machine: {platform.machine()}, {os.cpu_count()} cores; files in a temporary '
          'folder (page cache warm).\n')
    print('| step | size | measured |')
    print('| --- | --- | --- |')
    for step, size, measured in rows:
        print(f'| {step} | {size} | {measured} |')
    print('\n' + json.dumps(dict(scenes=args.scenes, frames=args.frames, dim=args.dim)))


if __name__ == '__main__':
    main()
