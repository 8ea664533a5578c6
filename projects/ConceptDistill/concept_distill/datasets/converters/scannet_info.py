"""Writing mmdet3d v2 ScanNet infos with posed frames, and the files they point to."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SCANNET_CLASSES = ('cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
                   'picture', 'counter', 'desk', 'curtain', 'refrigerator', 'showercurtrain',
                   'toilet', 'sink', 'bathtub', 'garbagebin')
# NYU40 ids of the 18 detection classes and the 20 segmentation classes (mmdet3d's order).
SCANNET_DET_NYU40 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET_SEG_NYU40 = (1, 2) + SCANNET_DET_NYU40
DEPTH_SHIFT = 1000.0  # ScanNet depth PNGs hold millimetres


def scannet_metainfo() -> dict:
    """`metainfo` of mmdet3d's v2 ScanNet info files (update_infos_to_v2.py)."""
    return dict(categories={name: i for i, name in enumerate(SCANNET_CLASSES)},
                dataset='scannet', info_version='1.1')


def scannet_data_info(scene: str, boxes: np.ndarray, labels: np.ndarray,
                      axis_align_matrix: np.ndarray, frames: list[dict] | None = None) -> dict:
    """One `data_list` entry as mmdet3d's converter writes it, plus the posed `frames`.

    `boxes` are (K, 6) [cx, cy, cz, dx, dy, dz] in the axis-aligned frame; `labels` are
    indices into SCANNET_CLASSES.
    """
    info = dict(
        lidar_points=dict(num_pts_feats=6, lidar_path=f'{scene}.bin'),
        instances=[dict(bbox_3d=[float(x) for x in b], bbox_label_3d=int(lab))
                   for b, lab in zip(boxes, labels)],
        pts_semantic_mask_path=f'{scene}.bin',
        pts_instance_mask_path=f'{scene}.bin',
        axis_align_matrix=np.asarray(axis_align_matrix, dtype=np.float64).tolist(),
    )
    if frames is not None:
        info['frames'] = frames
    return info


def frame_entry(scene: str, index: int | str, cam2img: np.ndarray, cam2global: np.ndarray,
                depth2img: np.ndarray | None = None, has_depth: bool = True,
                img_ext: str = '.jpg') -> dict:
    """The `frames` item of docs/architecture.md for a frame saved by `write_posed_frame`
    (`index` an int, named with 5 digits as ScanNet's exporter does, or a file stem)."""
    name = index if isinstance(index, str) else f'{index:05d}'
    stem = f'posed_images/{scene}/{name}'
    frame = dict(frame_id=f'{scene}/{name}', img_path=stem + img_ext,
                 cam2img=_mat4(cam2img).tolist(), cam2global=_mat4(cam2global).tolist())
    if has_depth:
        frame['depth_path'] = stem + '.png'
        frame['depth2img'] = _mat4(cam2img if depth2img is None else depth2img).tolist()
    return frame


def _mat4(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):
        out = np.eye(4)
        out[:3, :3] = m
        return out
    return m


def write_posed_frame(root: str | Path, scene: str, index: int, rgb: np.ndarray | bytes | None,
                      depth_m: np.ndarray | None, cam2global: np.ndarray,
                      jpeg_quality: int = 95) -> None:
    """Save one frame as ScanNet's exporter does: `<i>.jpg`, `<i>.png` (uint16 mm), `<i>.txt`.

    `rgb` may be an (H, W, 3) uint8 array or already-encoded JPEG bytes (kept as they are).
    """
    folder = Path(root) / 'posed_images' / scene
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f'{index:05d}'
    if isinstance(rgb, bytes | bytearray):
        Path(f'{stem}.jpg').write_bytes(rgb)
    elif rgb is not None:
        Image.fromarray(rgb).save(f'{stem}.jpg', quality=jpeg_quality)
    if depth_m is not None:
        write_depth_png(f'{stem}.png', depth_m)
    np.savetxt(f'{stem}.txt', np.asarray(cam2global, dtype=np.float64), fmt='%.8f')


def write_depth_png(path: str | Path, depth_m: np.ndarray) -> None:
    """Depth in metres -> 16-bit PNG of millimetres (0 = no reading)."""
    mm = np.clip(np.round(depth_m * DEPTH_SHIFT), 0, 65535).astype(np.uint16)
    Image.fromarray(mm).save(str(path))


def read_depth_png(path: str | Path) -> np.ndarray:
    """16-bit PNG of millimetres -> float32 metres (0 = no reading)."""
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / DEPTH_SHIFT


def write_scene_arrays(root: str | Path, scene: str, points: np.ndarray,
                       instance: np.ndarray | None, semantic: np.ndarray | None) -> None:
    """points/<scene>.bin (float32 x,y,z,r,g,b) and int64 instance / semantic masks."""
    root = Path(root)
    for sub in ('points', 'instance_mask', 'semantic_mask'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    np.asarray(points, dtype=np.float32).tofile(root / 'points' / f'{scene}.bin')
    if instance is not None:
        np.asarray(instance, dtype=np.int64).tofile(root / 'instance_mask' / f'{scene}.bin')
    if semantic is not None:
        np.asarray(semantic, dtype=np.int64).tofile(root / 'semantic_mask' / f'{scene}.bin')


def dump_infos(path: str | Path, data_list: list[dict], metainfo: dict | None = None) -> None:
    """Write a v2 info file atomically (a killed run never leaves half a pickle)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + '.tmp')
    with open(tmp, 'wb') as f:
        pickle.dump(dict(metainfo=metainfo or scannet_metainfo(), data_list=data_list), f)
    os.replace(tmp, path)


def write_seg_info(root: str | Path, split: str, semantic_masks: list[np.ndarray],
                   num_points: int = 8192) -> None:
    """seg_info/<split>_resampled_scene_idxs.npy and _label_weight.npy, as mmdet3d's
    ScanNet converter computes them (scenes repeated by size; weights 1 / ln(1.2 + freq))."""
    lut = np.full(41, len(SCANNET_SEG_NYU40), dtype=np.int64)
    lut[list(SCANNET_SEG_NYU40)] = np.arange(len(SCANNET_SEG_NYU40))
    counts = np.zeros(len(SCANNET_SEG_NYU40) + 1)
    sizes = []
    for sem in semantic_masks:
        label = lut[np.clip(sem, 0, 40)]
        sizes.append(len(label))
        counts += np.bincount(label, minlength=len(counts))[:len(counts)]
    sizes = np.asarray(sizes, dtype=np.float64)
    num_iter = int(sizes.sum() / num_points)
    scene_idxs = []
    for idx, p in enumerate(sizes / sizes.sum()):
        scene_idxs += [idx] * int(round(p * num_iter))
    if not scene_idxs:  # a scene smaller than one sample still has to be visited
        scene_idxs = list(range(len(sizes)))
    freq = counts[:-1] / max(counts[:-1].sum(), 1.0)
    weight = (1.0 / np.log(1.2 + freq)).astype(np.float32)
    folder = Path(root) / 'seg_info'
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f'{split}_resampled_scene_idxs.npy', np.asarray(scene_idxs, np.int32))
    np.save(folder / f'{split}_label_weight.npy', weight)
