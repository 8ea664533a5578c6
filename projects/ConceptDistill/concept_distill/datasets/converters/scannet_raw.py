"""Extraction of raw ScanNet scans (mesh, segments, aggregation, alignment) to per-scene arrays.

mmdet3d's pip package lacks its ScanNet extraction scripts; this module produces the same
`scannet_instance_data/<scene>_{vert,sem_label,ins_label,aligned_bbox,unaligned_bbox,
axis_align_matrix}.npy` files that mmdet3d's indoor converter reads: mesh vertices (xyz, rgb
0-255, unaligned), NYU40 semantic ids, 1-based instance ids (0 = unannotated) and tight
axis-aligned boxes [cx, cy, cz, dx, dy, dz, nyu40] of the 18 detection classes.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.scannet_info import SCANNET_DET_NYU40

_PLY_TYPES = {'char': 'i1', 'uchar': 'u1', 'int8': 'i1', 'uint8': 'u1', 'short': 'i2',
              'ushort': 'u2', 'int16': 'i2', 'uint16': 'u2', 'int': 'i4', 'uint': 'u4',
              'int32': 'i4', 'uint32': 'u4', 'float': 'f4', 'float32': 'f4', 'double': 'f8',
              'float64': 'f8'}


def read_ply_vertices(path: str | Path) -> np.ndarray:
    """(N, 6) float32 x, y, z, red, green, blue (0-255) of a PLY mesh's vertices."""
    path = Path(path)
    with open(path, 'rb') as f:
        if f.readline().strip() != b'ply':
            raise ValueError(f'{path} is not a PLY file')
        fmt, props, count, in_vertex, first = None, [], 0, False, True
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f'{path}: PLY header has no end_header')
            words = line.decode('ascii', errors='replace').split()
            if not words:
                continue
            if words[0] == 'end_header':
                break
            if words[0] == 'format':
                fmt = words[1]
            elif words[0] == 'element':
                in_vertex = words[1] == 'vertex'
                if in_vertex:
                    if not first:
                        raise ValueError(f'{path}: the vertex element must come first')
                    count = int(words[2])
                first = False
            elif words[0] == 'property' and in_vertex:
                if words[1] == 'list':
                    raise ValueError(f'{path}: list properties on vertices are not supported')
                props.append((words[2], _PLY_TYPES[words[1]]))
        if fmt == 'ascii':
            rows = [f.readline().split() for _ in range(count)]
            data = np.array(rows, dtype=np.float64)
            cols = {name: data[:, i] for i, (name, _) in enumerate(props)}
        else:
            endian = '<' if fmt == 'binary_little_endian' else '>'
            dtype = np.dtype([(name, endian + t) for name, t in props])
            buf = f.read(dtype.itemsize * count)
            if len(buf) != dtype.itemsize * count:
                raise ValueError(f'{path}: truncated PLY vertex data')
            data = np.frombuffer(buf, dtype=dtype)
            cols = {name: data[name] for name, _ in props}
    try:
        keys = ('x', 'y', 'z', 'red', 'green', 'blue')
        return np.stack([np.asarray(cols[k], dtype=np.float32) for k in keys], axis=1)
    except KeyError as err:
        raise ValueError(f'{path}: vertices lack property {err}') from None


def read_label_map(path: str | Path) -> dict[str, int]:
    """ScanNet `scannetv2-labels.combined.tsv`: raw_category -> nyu40id."""
    with open(path, newline='') as f:
        return {row['raw_category']: int(row['nyu40id'])
                for row in csv.DictReader(f, delimiter='\t') if row.get('nyu40id')}


def read_axis_alignment(path: str | Path) -> np.ndarray:
    """4x4 `axisAlignment` of a scene's meta `.txt` (identity when absent, as in test scans)."""
    for line in Path(path).read_text().splitlines():
        if line.strip().startswith('axisAlignment'):
            try:
                values = [float(x) for x in line.split('=', 1)[1].split()]
                return np.asarray(values, dtype=np.float64).reshape(4, 4)
            except (ValueError, IndexError) as err:
                raise ValueError(f'{path}: axisAlignment is not 16 numbers ({err}): fix that '
                                 'line, or restore the file from ScanNet') from None
    return np.eye(4)


def _boxes(xyz: np.ndarray, instance: np.ndarray, inst_nyu: dict[int, int]) -> np.ndarray:
    rows = []
    for inst_id in sorted(inst_nyu):
        nyu = inst_nyu[inst_id]
        sel = instance == inst_id
        if nyu not in SCANNET_DET_NYU40 or not sel.any():
            continue
        lo, hi = xyz[sel].min(axis=0), xyz[sel].max(axis=0)
        rows.append(np.concatenate([(lo + hi) / 2, hi - lo, [nyu]]))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def load_raw_scene(scene_dir: str | Path, label_map: dict[str, int],
                   with_labels: bool = True) -> dict:
    """Read one `scans/<scene>/` folder into arrays (see the module docstring)."""
    scene_dir = Path(scene_dir)
    name = scene_dir.name
    mesh = scene_dir / f'{name}_vh_clean_2.ply'
    if not mesh.is_file():
        raise FileNotFoundError(f'mesh file not found: {mesh}')
    vert = read_ply_vertices(mesh)
    meta = scene_dir / f'{name}.txt'
    align = read_axis_alignment(meta) if meta.is_file() else np.eye(4)
    out = dict(name=name, vert=vert, axis_align_matrix=align)
    if not with_labels:
        return out
    segs_path = scene_dir / f'{name}_vh_clean_2.0.010000.segs.json'
    agg_path = scene_dir / f'{name}.aggregation.json'
    for p in (segs_path, agg_path):
        if not p.is_file():
            raise FileNotFoundError(f'annotation file not found: {p}')
    seg_indices = np.asarray(json.loads(segs_path.read_text())['segIndices'], dtype=np.int64)
    if len(seg_indices) != len(vert):
        raise ValueError(f'{segs_path}: {len(seg_indices)} segment ids for {len(vert)} vertices')
    groups = json.loads(agg_path.read_text())['segGroups']
    semantic = np.zeros(len(vert), dtype=np.int64)
    instance = np.zeros(len(vert), dtype=np.int64)
    inst_nyu = {}
    for g in groups:
        inst_id = int(g['objectId']) + 1  # 1-based; 0 = unannotated
        nyu = label_map.get(g['label'], 0)
        mask = np.isin(seg_indices, np.asarray(g['segments'], dtype=np.int64))
        semantic[mask] = nyu
        instance[mask] = inst_id
        inst_nyu[inst_id] = nyu
    xyz = vert[:, :3].astype(np.float64)
    aligned = xyz @ align[:3, :3].T + align[:3, 3]
    out.update(sem_label=semantic, ins_label=instance,
               unaligned_bbox=_boxes(xyz, instance, inst_nyu),
               aligned_bbox=_boxes(aligned, instance, inst_nyu))
    return out


def export_scene(scene_dir: str | Path, out_dir: str | Path, label_map: dict[str, int],
                 with_labels: bool = True) -> dict:
    """Write `<out_dir>/<scene>_*.npy` as mmdet3d's converter expects; returns the arrays."""
    arrays = load_raw_scene(scene_dir, label_map, with_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = arrays['name']
    np.save(out_dir / f'{name}_vert.npy', arrays['vert'])
    if with_labels:
        for key in ('sem_label', 'ins_label', 'unaligned_bbox', 'aligned_bbox',
                    'axis_align_matrix'):
            np.save(out_dir / f'{name}_{key}.npy', arrays[key])
    return arrays
