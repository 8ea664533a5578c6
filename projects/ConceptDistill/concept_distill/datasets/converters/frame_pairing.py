"""Precomputing frame pairs at preparation (`tools/create_data.py pairs`): once per frame, the
points of its scene it sees, exactly as `FrustumPointPairing` decides online.

For every frame of the info files: project the scene's points with the frame's `lidar2img`,
keep those inside the image and the depth range and, with a depth frame, within
`occlusion_tol` of the depth reading (`visible_points`, the online path's own function), and
write `<frame>.pairs` next to the image (format: `datasets/frame_pairs.py`). Resumable: a frame
whose file already holds these parameters and inputs is not redone, and files are written
atomically, so a killed run restarts where it stopped.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from concept_distill.datasets.frame_pairs import (
    matrix_differs,
    pairing_params,
    pairs_path,
    params_mismatch,
    read_header,
    write_frame_pairs,
)
from concept_distill.datasets.frustum_pairing import PairedDataError, visible_points
from concept_distill.datasets.transforms.load_paired_image import LoadPairedImage

DEFAULT_ANN_FILES = ('scannet_infos_train.pkl', 'scannet_infos_val.pkl',
                     'scannet_infos_test.pkl', 'sunrgbd_infos_train.pkl',
                     'sunrgbd_infos_val.pkl')


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `pairs` sub-command's options (besides --root-path, --out-dir, --workers)."""
    p.add_argument('--ann-files', nargs='+', default=None,
                   help='info files (in --out-dir, default the root) whose frames to pair '
                   '(default: those of ' + ', '.join(DEFAULT_ANN_FILES) + ' that exist)')
    p.add_argument('--pts-prefix', default='points', help="data_prefix['pts'] of the config")
    p.add_argument('--img-prefix', default='', help="data_prefix['img'] of the config")
    p.add_argument('--depth-range', type=float, nargs=2, default=(0.1, 10.0),
                   metavar=('NEAR', 'FAR'), help='FrustumPointPairing.depth_range (metres)')
    p.add_argument('--occlusion-tol', type=float, default=0.1,
                   help='FrustumPointPairing.occlusion_tol (metres)')
    p.add_argument('--keep-missing-depth', action='store_true',
                   help='FrustumPointPairing.keep_missing_depth')
    p.add_argument('--no-depth-test', action='store_true',
                   help='no occlusion test (for pipelines whose LoadPairedImage has '
                   'with_depth=False)')
    p.add_argument('--load-dim', type=int, default=6, help='LoadScenePoints.load_dim')


def pairs_from_args(args: argparse.Namespace, progress: Callable | None = None) -> dict:
    """Run the `pairs` sub-command from its parsed arguments."""
    return precompute_frame_pairs(
        args.root_path, args.ann_files, args.out_dir,
        dict(pts=args.pts_prefix, img=args.img_prefix), tuple(args.depth_range),
        args.occlusion_tol, args.keep_missing_depth, not args.no_depth_test, args.load_dim,
        args.workers, progress=progress)


def frame_entries(data_root: str, ann_files: list[str], data_prefix: dict) -> tuple[list, Counter]:
    """Every distinct frame (PairedFrameDataset's items) of the info files, and skip counts."""
    from concept_distill.datasets.paired_frame_dataset import PairedFrameDataset

    items, seen, counts = [], set(), Counter()
    for ann in ann_files:
        ds = PairedFrameDataset(data_root=data_root, ann_file=ann, data_prefix=data_prefix,
                                pipeline=[], test_mode=True, serialize_data=False)
        counts.update(ds.skip_counts)  # frames with a non-finite pose
        for item in ds.data_list:
            path = pairs_path(item['img_path'])
            if path not in seen:  # a scene in two splits is paired once
                seen.add(path)
                items.append(item)
    return items, counts


def _expected_frame(item: dict) -> dict:
    """The header's `frame` fields that follow from the infos alone."""
    l2d = item.get('lidar2depth')
    return dict(frame_id=item['frame_id'],
                lidar2img=np.asarray(item['lidar2img'], dtype=np.float64).tolist(),
                lidar2depth=None if l2d is None else np.asarray(l2d, np.float64).tolist(),
                depth_shift=item.get('depth_shift'))


def _occlusion_test(item: dict, with_depth: bool) -> bool:
    return bool(with_depth and item.get('depth_path'))


def is_current(item: dict, params: dict, load_dim: int) -> bool:
    """Whether the frame's pairs file exists and was made with these parameters and inputs."""
    header = read_header(pairs_path(item['img_path']))
    if header is None:
        return False
    frame, scene = header.get('frame', {}), header.get('scene', {})
    want = dict(params, occlusion_test=_occlusion_test(item, params['occlusion_test']))
    try:
        size = os.path.getsize(item['lidar_points']['lidar_path'])
    except OSError:
        return False
    return (params_mismatch(header.get('params', {}), want) is None
            and not any(matrix_differs(frame.get(k), v) for k, v in
                        _expected_frame(item).items() if k.startswith('lidar2'))
            and frame.get('depth_shift') == item.get('depth_shift')
            and scene.get('load_dim') == load_dim
            and scene.get('num_points', -1) * load_dim * 4 == size)


def load_scene_xyz(path: str, load_dim: int) -> np.ndarray:
    """(N, load_dim) float32 points of a scene file, checked as LoadScenePoints checks them."""
    if not os.path.isfile(path):
        raise PairedDataError(f'point file not found: {path}', path, 'missing_points')
    points = np.fromfile(path, dtype=np.float32)
    if points.size == 0 or points.size % load_dim:
        raise PairedDataError(f'corrupt point file {path}: {points.size} float32 values are '
                              f'not a whole number of {load_dim}-value points', path,
                              'corrupt_points')
    points = points.reshape(-1, load_dim)
    if not np.isfinite(points[:, :3]).all():
        raise PairedDataError(f'non-finite coordinates in point file {path}', path,
                              'corrupt_points')
    return points


def pair_frame(item: dict, points: np.ndarray, floor: np.floating, params: dict,
               load_dim: int) -> int:
    """Compute and write one frame's pairs (`floor`: the scene's floor height); bytes."""
    path = item['img_path']
    if not os.path.isfile(path):
        raise PairedDataError(f'image file not found: {path}', path, 'missing_image')
    try:
        with Image.open(path) as im:  # the header only: the size
            w, h = im.size
    except (OSError, SyntaxError, ValueError) as err:
        raise PairedDataError(f'corrupt image file {path}: {err}', path,
                              'corrupt_image') from err
    occlusion = _occlusion_test(item, params['occlusion_test'])
    depth_map = (LoadPairedImage._load_depth(item['depth_path'], item.get('depth_shift'))
                 if occlusion else None)
    l2d = item.get('lidar2depth')
    idx, _ = visible_points(points[:, :3], np.asarray(item['lidar2img']), (h, w),
                            tuple(params['depth_range']), depth_map,
                            None if l2d is None else np.asarray(l2d, dtype=np.float64),
                            params['occlusion_tol'], params['keep_missing_depth'])
    header = dict(params=dict(params, occlusion_test=occlusion),
                  frame=dict(_expected_frame(item), image_hw=[h, w]),
                  scene=dict(points_file=os.path.basename(item['lidar_points']['lidar_path']),
                             num_points=len(points), load_dim=load_dim,
                             floor_height=float(floor), floor_dtype=str(floor.dtype)))
    return write_frame_pairs(pairs_path(path), header, idx)


def _pair_scene(items: list[dict], params: dict, load_dim: int) -> tuple[list[int], Counter]:
    """All pending frames of one scene (its points read once): bytes per frame, skips."""
    sizes, skipped = [], Counter()
    try:
        points = load_scene_xyz(items[0]['lidar_points']['lidar_path'], load_dim)
    except PairedDataError as err:
        skipped[err.reason] += len(items)
        return sizes, skipped
    # mmdet3d's shift_height takes the floor over the whole scene; the pipeline gathers only
    # the kept points, so the floor is stored (with its dtype, for identical arithmetic).
    floor = np.percentile(points[:, 2], 0.99)
    for item in items:
        try:
            sizes.append(pair_frame(item, points, floor, params, load_dim))
        except PairedDataError as err:  # no file: training's online path meets it too
            skipped[err.reason] += 1
    return sizes, skipped


def precompute_frame_pairs(data_root: str, ann_files: list[str] | None = None,
                           info_dir: str | None = None, data_prefix: dict | None = None,
                           depth_range: tuple[float, float] = (0.1, 10.0),
                           occlusion_tol: float = 0.1, keep_missing_depth: bool = False,
                           with_depth: bool = True, load_dim: int = 6, workers: int = 1,
                           max_scenes: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> dict:
    """Write (or resume) `<frame>.pairs` for every frame of the info files; a summary dict.

    The defaults are those of configs/_base_/datasets/scannet-paired.py. Frames whose files
    are missing or corrupt are counted and get no pairs file (training then takes the online
    path for them, and skips them there as before). `progress(done, total)` counts frames,
    starting with those already done; `max_scenes` stops early (a deliberate interruption,
    for tests).
    """
    start = time.perf_counter()
    info = Path(info_dir or data_root)
    if ann_files is None:
        ann_files = [a for a in DEFAULT_ANN_FILES if (info / a).is_file()]
        if not ann_files:
            raise FileNotFoundError(f'no info file in {info} (looked for '
                                    f'{", ".join(DEFAULT_ANN_FILES)}); give --ann-files')
    prefix = {'pts': 'points', 'img': '', **(data_prefix or {})}
    items, counts = frame_entries(str(data_root), [str(info / a) for a in ann_files], prefix)
    params = pairing_params(depth_range, with_depth, occlusion_tol, keep_missing_depth)
    pending: dict[str, list[dict]] = {}
    for item in items:
        if not is_current(item, params, load_dim):
            pending.setdefault(item['lidar_points']['lidar_path'], []).append(item)
    scenes = list(pending.values())[:max_scenes]
    done = up_to_date = len(items) - sum(len(v) for v in pending.values())
    if progress is not None:
        progress(done, len(items))
    sizes: list[int] = []
    with ThreadPoolExecutor(max(int(workers), 1)) as pool:  # numpy and PIL release the GIL
        for group, (s, skipped) in zip(scenes, pool.map(
                lambda g: _pair_scene(g, params, load_dim), scenes)):
            sizes += s
            counts.update(skipped)
            done += len(group)
            if progress is not None:
                progress(done, len(items))
    return dict(root=str(data_root), ann_files=list(ann_files), frames=len(items),
                written=len(sizes), up_to_date=up_to_date,
                pending=sum(len(v) for v in pending.values()) - sum(map(len, scenes)),
                skipped=dict(counts), params=params,
                mean_bytes_per_frame=round(float(np.mean(sizes)), 1) if sizes else None,
                seconds=round(time.perf_counter() - start, 2))
