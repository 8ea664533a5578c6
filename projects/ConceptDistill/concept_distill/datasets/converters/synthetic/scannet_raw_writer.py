"""Writing a synthetic scene in ScanNet's *raw* layout, to exercise the real-data path.

scans/<scene>/<scene>_vh_clean_2.ply, <scene>_vh_clean_2.0.010000.segs.json,
<scene>.aggregation.json, <scene>.txt (axisAlignment), <scene>.sens; and
scannetv2-labels.combined.tsv beside scans/.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.scannet_info import DEPTH_SHIFT
from concept_distill.datasets.converters.scannet_sens import SensHeader, encode_frame, write_sens
from concept_distill.datasets.converters.synthetic.furniture import CLASSES, FLOOR_NYU40, WALL_NYU40
from concept_distill.datasets.converters.synthetic.scene import SyntheticScene


def write_label_map(path: str | Path) -> None:
    """A `scannetv2-labels.combined.tsv` covering the synthetic raw categories."""
    rows = [('wall', 'wall', WALL_NYU40, 'wall'), ('floor', 'floor', FLOOR_NYU40, 'floor')]
    rows += [(c.raw_category, c.raw_category, c.nyu40, c.name) for c in CLASSES]
    lines = ['id\traw_category\tcategory\tcount\tnyu40id\tnyu40class']
    lines += [f'{i + 1}\t{raw}\t{cat}\t1\t{nyu}\t{cls}' for i, (raw, cat, nyu, cls)
              in enumerate(rows)]
    Path(path).write_text('\n'.join(lines) + '\n')


def write_ply(path: str | Path, points: np.ndarray) -> None:
    """Binary little-endian PLY of coloured vertices (x, y, z float; rgb + alpha uchar)."""
    n = len(points)
    header = ('ply\nformat binary_little_endian 1.0\ncomment synthetic ConceptDistill scan\n'
              f'element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n'
              'property uchar red\nproperty uchar green\nproperty uchar blue\n'
              'property uchar alpha\nelement face 0\nproperty list uchar int vertex_indices\n'
              'end_header\n')
    dtype = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'),
                      ('green', 'u1'), ('blue', 'u1'), ('alpha', 'u1')])
    data = np.empty(n, dtype=dtype)
    for i, k in enumerate(('x', 'y', 'z')):
        data[k] = points[:, i]
    for i, k in enumerate(('red', 'green', 'blue')):
        data[k] = np.clip(np.round(points[:, 3 + i]), 0, 255)
    data['alpha'] = 255
    with open(path, 'wb') as f:
        f.write(header.encode('ascii'))
        f.write(data.tobytes())


def _segments(scene: SyntheticScene, cell: float = 0.5) -> np.ndarray:
    # Over-segment each instance on a coarse grid, as ScanNet's segmentation splits surfaces.
    cells = np.floor(scene.points[:, :3] / cell).astype(np.int64)
    keys = np.concatenate([scene.instance[:, None], cells], axis=1)
    _, seg = np.unique(keys, axis=0, return_inverse=True)
    return seg.reshape(-1)


def write_raw_scene(scans_dir: str | Path, scene: SyntheticScene,
                    bad_pose_frames: Iterable[int] = (), depth_step: int = 2) -> Path:
    """Write `scene` under `scans_dir/<name>/`; frames in `bad_pose_frames` get a -inf pose
    (as some ScanNet frames have) to exercise the skip path. Depth frames keep every
    `depth_step`-th pixel with their own intrinsics (ScanNet's depth is 640x480 against
    1296x968 colour). Returns the scene folder."""
    folder = Path(scans_dir) / scene.name
    folder.mkdir(parents=True, exist_ok=True)
    name = scene.name
    write_ply(folder / f'{name}_vh_clean_2.ply', scene.points)
    seg = _segments(scene)
    (folder / f'{name}_vh_clean_2.0.010000.segs.json').write_text(json.dumps(
        dict(params=dict(kThresh='0.0001', segMinVerts='20'), sceneId=name,
             segIndices=seg.tolist())))
    groups = []
    for obj in scene.objects:
        segs = np.unique(seg[scene.instance == obj.instance_id])
        if len(segs):
            groups.append(dict(id=obj.instance_id - 1, objectId=obj.instance_id - 1,
                               segments=segs.tolist(), label=obj.raw_category))
    (folder / f'{name}.aggregation.json').write_text(json.dumps(
        dict(sceneId=f'scannet.{name}', appId='Synthetic.v1', segGroups=groups,
             segmentsFile=f'scannet.{name}_vh_clean_2.0.010000.segs.json')))
    align = ' '.join(f'{v:.9f}' for v in scene.axis_align_matrix.reshape(-1))
    h, w = scene.frames[0].rgb.shape[:2] if scene.frames else (0, 0)
    dh, dw = -(-h // depth_step), -(-w // depth_step)
    (folder / f'{name}.txt').write_text(
        f'axisAlignment = {align}\ncolorHeight = {h}\ncolorWidth = {w}\n'
        f'depthHeight = {dh}\ndepthWidth = {dw}\nnumColorFrames = {len(scene.frames)}\n'
        f'numDepthFrames = {len(scene.frames)}\nsceneType = Bedroom / Hotel\n')
    bad = set(bad_pose_frames)
    frames = []
    for i, fr in enumerate(scene.frames):
        pose = np.full((4, 4), -np.inf) if i in bad else fr.cam2world
        depth = fr.depth[::depth_step, ::depth_step]
        depth = np.clip(np.round(depth * DEPTH_SHIFT), 0, 65535).astype(np.uint16)
        frames.append(encode_frame(fr.rgb, depth, pose, i))
    k = scene.frames[0].cam2img if scene.frames else np.eye(4)
    # Depth pixel j sits on colour pixel depth_step * j.
    kd = k.copy()
    kd[:2] /= depth_step
    write_sens(folder / f'{name}.sens',
               SensHeader(color_intrinsic=k, depth_intrinsic=kd, color_size=(h, w),
                          depth_size=(dh, dw), depth_shift=DEPTH_SHIFT), frames)
    return folder
