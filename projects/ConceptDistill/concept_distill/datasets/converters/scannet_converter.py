"""ScanNet preparation: raw scans -> mmdet3d v2 infos with posed frames."""
from __future__ import annotations

import pickle
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from concept_distill.datasets.converters.indoor_converters import (
    indoor_outputs,
    run_indoor_converter,
)
from concept_distill.datasets.converters.output_guard import run_guarded_outputs
from concept_distill.datasets.converters.scannet_frames import scene_frames
from concept_distill.datasets.converters.scannet_info import dump_infos
from concept_distill.datasets.converters.scannet_raw import export_scene, read_label_map

LABEL_MAP_NAME = 'scannetv2-labels.combined.tsv'


def _find_label_map(root: Path) -> Path:
    for p in (root / LABEL_MAP_NAME, root / 'meta_data' / LABEL_MAP_NAME):
        if p.is_file():
            return p
    raise FileNotFoundError(f'label map not found: {root / LABEL_MAP_NAME} (or under '
                            'meta_data/); it ships with ScanNet')


def _split(root: Path, split: str, required: bool) -> list[str]:
    path = root / 'meta_data' / f'scannetv2_{split}.txt'
    if not path.is_file():
        if required:
            raise FileNotFoundError(f'split file not found: {path} (one scene name per line)')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('')  # mmdet3d's converter insists on all three split files
        return []
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def convert_scannet(root_path: str | Path, out_dir: str | Path | None = None,
                    frame_stride: int = 20, max_frames_per_scene: int | None = None,
                    with_depth: bool = True, workers: int = 2,
                    progress: Callable[[int, int], None] | None = None,
                    force: bool = False) -> dict:
    """Prepare ScanNet under `root_path` (scans/, scans_test/, meta_data/, the label tsv).

    1. our extraction of every scene to `scannet_instance_data/` (mmdet3d's pip package lacks
       its own);
    2. posed frames: every `frame_stride`-th frame of `scans/<scene>/<scene>.sens`, or of a
       `posed_images/<scene>/` exported by another tool, written/kept under `posed_images/`;
       frames with non-finite poses are skipped and counted. Our own complete export is
       reused as it is when the options match, refused when they differ (unless `force`:
       exported again), and redone when it was interrupted (see `scene_frames`);
    3. mmdet3d's converter (points/, instance_mask/, semantic_mask/, seg_info/, v2 infos);
    4. the frames added to the v2 infos (`frames`, see docs/architecture.md).
    `progress(done, total)` counts scenes through steps 1-2, then again through step 3.
    mmdet3d's outputs (and `scannet_instance_data/`, the info files) that no earlier run of
    this command wrote are refused unless `force`, which deletes them first; the run's record
    `.create_data_scannet.json` is written last (`output_guard.run_guarded_outputs`).
    Returns a summary dict.
    """
    start = time.perf_counter()
    root = Path(root_path)
    out = Path(out_dir) if out_dir is not None else root
    # Everything that can be checked is checked before the output guard deletes anything.
    label_map = read_label_map(_find_label_map(root))
    splits = {s: _split(root, s, required=s == 'train') for s in ('train', 'val', 'test')}
    for split, scenes in splits.items():
        scans = root / ('scans_test' if split == 'test' else 'scans')
        for scene in scenes:
            if not (scans / scene).is_dir():
                raise FileNotFoundError(f'scene folder not found: {scans / scene} (listed in '
                                        f'meta_data/scannetv2_{split}.txt)')
    params = dict(root_path=str(root), out_dir=str(out), frame_stride=frame_stride,
                  max_frames_per_scene=max_frames_per_scene, with_depth=with_depth)
    return run_guarded_outputs(
        root, 'scannet', params, indoor_outputs('scannet', root, out), force,
        lambda: _convert(root, out, label_map, splits, frame_stride, max_frames_per_scene,
                         with_depth, workers, progress, force, start))


def _convert(root: Path, out: Path, label_map: dict[str, int], splits: dict[str, list[str]],
             frame_stride: int, max_frames_per_scene: int | None, with_depth: bool,
             workers: int, progress: Callable[[int, int], None] | None, force: bool,
             start: float) -> dict:
    """Steps 1-4 of `convert_scannet`, once its inputs are checked and its outputs claimed."""
    counts: Counter = Counter()
    frames: dict[str, list[dict]] = {}
    inst_dir = root / 'scannet_instance_data'
    total = len({s for scenes in splits.values() for s in scenes})
    for split, scenes in splits.items():
        scans = root / ('scans_test' if split == 'test' else 'scans')
        for scene in scenes:
            if scene in frames:  # a scene listed in two splits is prepared once
                continue
            scene_dir = scans / scene
            export_scene(scene_dir, inst_dir, label_map, with_labels=split != 'test')
            frames[scene] = scene_frames(root, scene, scene_dir / f'{scene}.sens',
                                         frame_stride, max_frames_per_scene, with_depth,
                                         counts, force)
            counts['scenes'] += 1
            if progress is not None:
                progress(counts['scenes'], total)

    written = run_indoor_converter('scannet', root, out, workers, progress=progress)
    for path in written:
        with open(path, 'rb') as f:
            infos = pickle.load(f)
        for info in infos['data_list']:
            scene = Path(info['lidar_points']['lidar_path']).stem
            info['frames'] = frames.get(scene, [])
        dump_infos(path, infos['data_list'], infos['metainfo'])
    return dict(root=str(root), info_files=[str(p) for p in written],
                scenes={s: len(v) for s, v in splits.items()},
                frames_kept=counts['frames_kept'], frames_read=counts['frames_read'],
                skipped_non_finite_pose=counts['non_finite_pose'],
                scenes_without_frames=counts['scenes_without_frames'],
                scenes_reused=counts['scenes_reused'],
                seconds=round(time.perf_counter() - start, 2))
