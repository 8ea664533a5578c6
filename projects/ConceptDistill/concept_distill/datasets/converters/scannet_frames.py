"""Posed RGB-D frames of a ScanNet scene: from its `.sens` stream or an exported folder."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from concept_distill.datasets.converters.output_guard import (
    OutputExistsError,
    read_json,
    write_json,
)
from concept_distill.datasets.converters.scannet_info import frame_entry, write_posed_frame
from concept_distill.datasets.converters.scannet_sens import iter_sens_frames

# Depth intrinsics live in a sub-folder (as ScanNet's SensReader exports them), because
# mmdet3d's converter takes every other .txt file in posed_images/<scene>/ for a pose.
DEPTH_INTRINSIC = Path('intrinsic') / 'intrinsic_depth.txt'
# Our export's record, written first with complete=False and rewritten last: a folder whose
# record is incomplete was killed mid-export and is redone.
EXPORT_MANIFEST = 'export.json'


def export_sens_frames(sens_path: str | Path, root: str | Path, scene: str,
                       frame_stride: int = 20, max_frames: int | None = None,
                       with_depth: bool = True, counts: Counter | None = None) -> list[dict]:
    """Write every `frame_stride`-th frame of a .sens file to `root/posed_images/<scene>/`.

    Colour JPEGs are copied byte for byte, depth is written as 16-bit PNG. Frames whose pose
    is not finite are skipped and counted in `counts['non_finite_pose']`. Returns the
    `frames` entries for the scene's info.
    """
    counts = Counter() if counts is None else counts
    header, frames = iter_sens_frames(sens_path, frame_stride)
    if header.color_compression != 'jpeg':
        raise ValueError(f'{sens_path}: colour compression {header.color_compression!r} is '
                         'not supported (ScanNet streams hold JPEG)')
    folder = Path(root) / 'posed_images' / scene
    folder.mkdir(parents=True, exist_ok=True)
    options = dict(frame_stride=frame_stride, max_frames=max_frames, with_depth=with_depth)
    write_json(folder / EXPORT_MANIFEST, dict(options, complete=False, source=str(sens_path)))
    entries, read, bad_pose = [], 0, 0
    for fr in frames:
        counts['frames_read'] += 1
        read += 1
        if not np.isfinite(fr.camera_to_world).all():
            counts['non_finite_pose'] += 1
            bad_pose += 1
            continue
        depth = fr.depth(header).astype(np.float32) / header.depth_shift if with_depth else None
        write_posed_frame(root, scene, fr.index, fr.color_bytes, depth, fr.camera_to_world)
        entries.append(frame_entry(scene, fr.index, header.color_intrinsic, fr.camera_to_world,
                                   header.depth_intrinsic, has_depth=with_depth))
        counts['frames_kept'] += 1
        if max_frames is not None and len(entries) >= max_frames:
            break
    # The intrinsics and the record come after the frames: a folder with them is complete.
    if with_depth:
        (folder / DEPTH_INTRINSIC.parent).mkdir(exist_ok=True)
        np.savetxt(folder / DEPTH_INTRINSIC, header.depth_intrinsic, fmt='%.8f')
    np.savetxt(folder / 'intrinsic.txt', header.color_intrinsic, fmt='%.8f')
    write_json(folder / EXPORT_MANIFEST, dict(
        options, complete=True, source=str(sens_path), frames_read=read,
        non_finite_pose=bad_pose, frames=[Path(e['img_path']).stem for e in entries]))
    return entries


def scene_frames(root: str | Path, scene: str, sens_path: str | Path, frame_stride: int = 20,
                 max_frames: int | None = None, with_depth: bool = True,
                 counts: Counter | None = None, force: bool = False) -> list[dict]:
    """The `frames` entries of one scene, exporting its `.sens` stream only when needed.

    - our complete export with the same options: its frames, as exported (never strided
      again; counted as `scenes_reused`);
    - our complete export with other options: `OutputExistsError` naming the folder and the
      options it has, unless `force` (then exported again from the `.sens`);
    - our interrupted export (record incomplete): removed and exported again;
    - a folder exported by another tool (`intrinsic.txt`, no record; e.g. mmdet3d's
      `extract_posed_images.py`): read, keeping every `frame_stride`-th frame;
    - otherwise the `.sens` is exported; with neither, the scene has no frames.
    """
    counts = Counter() if counts is None else counts
    folder, sens_path = Path(root) / 'posed_images' / scene, Path(sens_path)
    record = read_json(folder / EXPORT_MANIFEST) if folder.is_dir() else None
    wanted = dict(frame_stride=frame_stride, max_frames=max_frames, with_depth=with_depth)
    if record is not None and record.get('complete'):
        had = {k: record.get(k) for k in wanted}
        if had == wanted:
            got: Counter = Counter()
            entries = collect_exported_frames(root, scene, counts=got, names=record['frames'])
            counts['frames_kept'] += got['frames_kept']
            counts['frames_read'] += record['frames_read']
            counts['non_finite_pose'] += record['non_finite_pose']
            counts['scenes_reused'] += 1
            return entries
        if not force or not sens_path.is_file():
            flags = ', '.join(f'{k}={had[k]!r} (now {wanted[k]!r})' for k in wanted
                              if had[k] != wanted[k])
            raise OutputExistsError(
                f'{folder} was exported with other options: {flags}. Rerun with its options '
                f'to reuse it, or pass --force to export it again from {sens_path}'
                + ('' if sens_path.is_file() else ' (which is missing)'))
        shutil.rmtree(folder)
    elif record is not None:
        if not sens_path.is_file():
            raise FileNotFoundError(f'{folder} holds an interrupted export and its source '
                                    f'{sens_path} is missing: restore it, or delete {folder}')
        shutil.rmtree(folder)  # killed mid-export: redo it from the start
    elif (folder / 'intrinsic.txt').is_file():
        return collect_exported_frames(root, scene, frame_stride, max_frames, counts)
    if sens_path.is_file():
        return export_sens_frames(sens_path, root, scene, frame_stride, max_frames, with_depth,
                                  counts)
    counts['scenes_without_frames'] += 1
    return []


def collect_exported_frames(root: str | Path, scene: str, frame_stride: int = 1,
                            max_frames: int | None = None,
                            counts: Counter | None = None,
                            names: list[str] | None = None) -> list[dict]:
    """`frames` entries of an already exported `posed_images/<scene>/` folder.

    Reads `<i>.jpg` + `<i>.txt` (pose) + `intrinsic.txt`, and `<i>.png` depth when present,
    with `intrinsic/intrinsic_depth.txt` or, lacking it, the colour intrinsics scaled to the
    depth image's size. Non-finite poses are skipped and counted. `names` (file stems) reads
    exactly those frames instead of every `frame_stride`-th image.
    """
    counts = Counter() if counts is None else counts
    folder = Path(root) / 'posed_images' / scene
    k_path = folder / 'intrinsic.txt'
    if not k_path.is_file():
        raise FileNotFoundError(f'intrinsics file not found: {k_path}')
    k = _load_matrix(k_path, ((3, 3), (4, 4)))
    kd_fixed = (_load_matrix(folder / DEPTH_INTRINSIC, ((3, 3), (4, 4)))
                if (folder / DEPTH_INTRINSIC).is_file() else None)
    images = ([folder / f'{n}.jpg' for n in names] if names is not None
              else sorted(folder.glob('*.jpg'))[::max(frame_stride, 1)])
    entries = []
    for img in images:
        counts['frames_read'] += 1
        if not img.is_file():
            raise FileNotFoundError(f'image file not found: {img} (listed in '
                                    f'{folder / EXPORT_MANIFEST}); rerun with --force to export '
                                    'the scene again')
        pose_path = img.with_suffix('.txt')
        if not pose_path.is_file():
            raise FileNotFoundError(f'pose file not found: {pose_path}')
        pose = _load_matrix(pose_path, ((4, 4),))
        if not np.isfinite(pose).all():
            counts['non_finite_pose'] += 1
            continue
        depth = img.with_suffix('.png')
        kd = None
        if depth.is_file():
            kd = kd_fixed
            if kd is None:
                kd = _scaled_intrinsics(k, img, depth)
        entries.append(frame_entry(scene, img.stem, k, pose, kd, has_depth=depth.is_file()))
        counts['frames_kept'] += 1
        if max_frames is not None and len(entries) >= max_frames:
            break
    return entries


def _load_matrix(path: Path, shapes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A matrix text file; anything else is a `ValueError` naming the file and the fix."""
    try:
        m = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        m, why = None, f'not numbers ({err})'
    else:
        why = f'shape {m.shape}'
    if m is None or m.shape not in shapes:
        raise ValueError(f'{path} is not a {" or ".join(f"{a}x{b}" for a, b in shapes)} matrix '
                         f'of numbers ({why}): fix or delete the file, or export the scene '
                         'again from its .sens')
    return m


def _scaled_intrinsics(k: np.ndarray, img: Path, depth: Path) -> np.ndarray:
    with Image.open(img) as a, Image.open(depth) as b:
        (w, h), (dw, dh) = a.size, b.size
    kd = np.array(k, dtype=np.float64)
    kd[0] *= dw / w
    kd[1] *= dh / h
    return kd
