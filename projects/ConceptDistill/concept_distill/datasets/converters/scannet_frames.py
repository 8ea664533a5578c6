"""Posed RGB-D frames of a ScanNet scene: from its `.sens` stream or an exported folder."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from concept_distill.datasets.converters.scannet_info import frame_entry, write_posed_frame
from concept_distill.datasets.converters.scannet_sens import iter_sens_frames

# Depth intrinsics live in a sub-folder (as ScanNet's SensReader exports them), because
# mmdet3d's converter takes every other .txt file in posed_images/<scene>/ for a pose.
DEPTH_INTRINSIC = Path('intrinsic') / 'intrinsic_depth.txt'


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
    np.savetxt(folder / 'intrinsic.txt', header.color_intrinsic, fmt='%.8f')
    if with_depth:
        (folder / DEPTH_INTRINSIC.parent).mkdir(exist_ok=True)
        np.savetxt(folder / DEPTH_INTRINSIC, header.depth_intrinsic, fmt='%.8f')
    entries = []
    for fr in frames:
        counts['frames_read'] += 1
        if not np.isfinite(fr.camera_to_world).all():
            counts['non_finite_pose'] += 1
            continue
        depth = fr.depth(header).astype(np.float32) / header.depth_shift if with_depth else None
        write_posed_frame(root, scene, fr.index, fr.color_bytes, depth, fr.camera_to_world)
        entries.append(frame_entry(scene, fr.index, header.color_intrinsic, fr.camera_to_world,
                                   header.depth_intrinsic, has_depth=with_depth))
        counts['frames_kept'] += 1
        if max_frames is not None and len(entries) >= max_frames:
            break
    return entries


def collect_exported_frames(root: str | Path, scene: str, frame_stride: int = 1,
                            max_frames: int | None = None,
                            counts: Counter | None = None) -> list[dict]:
    """`frames` entries of an already exported `posed_images/<scene>/` folder.

    Reads `<i>.jpg` + `<i>.txt` (pose) + `intrinsic.txt`, and `<i>.png` depth when present,
    with `intrinsic/intrinsic_depth.txt` or, lacking it, the colour intrinsics scaled to the
    depth image's size. Non-finite poses are skipped and counted.
    """
    counts = Counter() if counts is None else counts
    folder = Path(root) / 'posed_images' / scene
    k_path = folder / 'intrinsic.txt'
    if not k_path.is_file():
        raise FileNotFoundError(f'intrinsics file not found: {k_path}')
    k = np.loadtxt(k_path)
    kd_fixed = np.loadtxt(folder / DEPTH_INTRINSIC) if (folder / DEPTH_INTRINSIC).is_file() \
        else None
    images = sorted(folder.glob('*.jpg'))[::max(frame_stride, 1)]
    entries = []
    for img in images:
        counts['frames_read'] += 1
        pose_path = img.with_suffix('.txt')
        if not pose_path.is_file():
            raise FileNotFoundError(f'pose file not found: {pose_path}')
        pose = np.loadtxt(pose_path)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
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


def _scaled_intrinsics(k: np.ndarray, img: Path, depth: Path) -> np.ndarray:
    with Image.open(img) as a, Image.open(depth) as b:
        (w, h), (dw, dh) = a.size, b.size
    kd = np.array(k, dtype=np.float64)
    kd[0] *= dw / w
    kd[1] *= dh / h
    return kd
