"""Writers of synthetic objects in the layouts of the real object datasets.

Each writer produces what the public distribution of the dataset holds (file names, columns,
dtypes), so the readers of ``concept_distill.datasets.object_datasets`` read real and
synthetic roots the same way. Only two files are added that the real layouts lack, because
the synthetic classes are not the real ones: ``synthetic_shape_names.txt`` beside the
ScanObjectNN h5 files (its labels are indices into it) and ``seg_classes.json`` beside
ShapeNetPart's ``synsetoffset2category.txt`` (category -> global part ids). Points are in
the object frame of ``objects.py`` (y up, unit sphere).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.synthetic.objects import (
    OBJECT_CLASSES,
    SyntheticObject,
    global_part_ids,
)

SCANOBJECTNN_FILES = {  # variant -> (folder, file stem suffix)
    'OBJ_BG': ('main_split', 'objectdataset'),
    'OBJ_ONLY': ('main_split_nobg', 'objectdataset'),
    'PB_T50_RS': ('main_split', 'objectdataset_augmentedrot_scale75'),
}


def _resample(rng: np.random.Generator, n_have: int, n_want: int) -> np.ndarray:
    """Indices of `n_want` of `n_have` items (without replacement when there are enough)."""
    return rng.choice(n_have, n_want, replace=n_have < n_want)


# ----------------------------------------------------------------------------- ModelNet40
def write_modelnet40_normal_resampled(out_dir: Path, train: Sequence[SyntheticObject],
                                      test: Sequence[SyntheticObject],
                                      classes: Sequence[str] = OBJECT_CLASSES) -> Path:
    """``modelnet40_normal_resampled``: ``<class>/<class>_XXXX.txt`` rows "x,y,z,nx,ny,nz",
    ``modelnet40_shape_names.txt`` and ``modelnet40_{train,test}.txt`` (shape ids)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'modelnet40_shape_names.txt').write_text(''.join(f'{c}\n' for c in classes))
    for split, objs in (('train', train), ('test', test)):
        (out / f'modelnet40_{split}.txt').write_text(''.join(f'{o.name}\n' for o in objs))
        for o in objs:
            (out / o.class_name).mkdir(exist_ok=True)
            rows = np.concatenate([o.xyz, o.normals], axis=1)
            np.savetxt(out / o.class_name / f'{o.name}.txt', rows, fmt='%.6f', delimiter=',')
    return out


def write_modelnet40_h5(out_dir: Path, train: Sequence[SyntheticObject],
                        test: Sequence[SyntheticObject], classes: Sequence[str] = OBJECT_CLASSES,
                        num_points: int = 2048, shapes_per_file: int = 2048,
                        seed: int = 0) -> Path:
    """``modelnet40_ply_hdf5_2048``: ``ply_data_{split}{k}.h5`` (``data`` (S, 2048, 3) float32,
    ``label`` (S, 1) uint8, ``normal``), listed in ``{split}_files.txt``; ``shape_names.txt``."""
    import h5py

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'shape_names.txt').write_text(''.join(f'{c}\n' for c in classes))
    rng = np.random.default_rng(seed)
    for split, objs in (('train', train), ('test', test)):
        listed = []
        for k, start in enumerate(range(0, max(len(objs), 1), shapes_per_file)):
            chunk = objs[start:start + shapes_per_file]
            idx = [_resample(rng, len(o.xyz), num_points) for o in chunk]
            data = np.stack([o.xyz[i] for o, i in zip(chunk, idx)]).reshape(-1, num_points, 3)
            normal = np.stack([o.normals[i] for o, i in zip(chunk, idx)]).reshape(
                -1, num_points, 3)
            label = np.array([[list(classes).index(o.class_name)] for o in chunk],
                             dtype=np.uint8).reshape(-1, 1)
            name = f'ply_data_{split}{k}.h5'
            with h5py.File(out / name, 'w') as f:
                f.create_dataset('data', data=data.astype(np.float32))
                f.create_dataset('label', data=label)
                f.create_dataset('normal', data=normal.astype(np.float32))
            listed.append(f'data/modelnet40_ply_hdf5_2048/{name}\n')
        (out / f'{split}_files.txt').write_text(''.join(listed))
    return out


# ----------------------------------------------------------------------------- ScanObjectNN
def _background(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                n: int) -> np.ndarray:
    """Scan-like clutter around an object's box [lo, hi]: floor, a wall behind, a box."""
    span = hi - lo
    n_floor, n_wall = n // 2, n // 4
    n_box = n - n_floor - n_wall
    floor = np.stack([rng.uniform(lo[0] - 0.4 * span[0], hi[0] + 0.4 * span[0], n_floor),
                      np.full(n_floor, lo[1]),
                      rng.uniform(lo[2] - 0.4 * span[2], hi[2] + 0.4 * span[2], n_floor)], 1)
    wall = np.stack([rng.uniform(lo[0] - 0.4 * span[0], hi[0] + 0.4 * span[0], n_wall),
                     rng.uniform(lo[1], hi[1] + 0.2 * span[1], n_wall),
                     np.full(n_wall, lo[2] - 0.15 * span[2])], 1)
    side = rng.choice([-1.0, 1.0])
    x0 = hi[0] + 0.05 * span[0] if side > 0 else lo[0] - 0.35 * span[0]
    box = np.stack([rng.uniform(x0, x0 + 0.3 * span[0], n_box),
                    rng.uniform(lo[1], lo[1] + 0.4 * span[1], n_box),
                    rng.uniform(lo[2], lo[2] + 0.5 * span[2], n_box)], 1)
    pts = np.concatenate([floor, wall, box])
    return pts + rng.normal(0.0, 0.005, pts.shape)


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def scanobjectnn_sample(obj: SyntheticObject, variant: str, rng: np.random.Generator,
                        num_points: int = 2048,
                        background_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One ScanObjectNN-style cloud of `obj`: (xyz (num_points, 3) float32, mask (num_points,)
    int32: -1 background, else the object point's local part index).

    OBJ_ONLY: object points; OBJ_BG: plus background clutter; PB_T50_RS: the box is shifted by
    up to 50% of its size before cropping, then the crop is rotated about the up axis and
    scaled (our reading of the variant's name; the real perturbation is the benchmark's)."""
    xyz = obj.xyz.astype(np.float64)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    if variant == 'OBJ_ONLY':
        idx = _resample(rng, len(xyz), num_points)
        return xyz[idx].astype(np.float32), obj.part[idx].astype(np.int32)
    n_bg = int(round(background_fraction * num_points))
    bg = _background(rng, lo, hi, 4 * n_bg)
    pts = np.concatenate([xyz, bg])
    mask = np.concatenate([obj.part, np.full(len(bg), -1)])
    if variant == 'OBJ_BG':
        keep_obj = _resample(rng, len(xyz), num_points - n_bg)
        keep_bg = len(xyz) + _resample(rng, len(bg), n_bg)
        idx = np.concatenate([keep_obj, keep_bg])
        out = pts[idx]
    elif variant == 'PB_T50_RS':
        span = hi - lo
        shift = rng.uniform(-0.5, 0.5, 3) * span
        shift[1] = 0.0
        blo, bhi = lo + shift - 0.1 * span, hi + shift + 0.1 * span
        inside = np.nonzero(((pts >= blo) & (pts <= bhi)).all(axis=1))[0]
        idx = inside[_resample(rng, len(inside), num_points)]
        centre = (blo + bhi) / 2
        out = (pts[idx] - centre) @ _rot_y(rng.uniform(-np.pi, np.pi)).T
        out = out * rng.uniform(0.75, 1.25) / np.linalg.norm(out, axis=1).max()
    else:
        raise ValueError(f'unknown ScanObjectNN variant {variant!r}; '
                         f'known: {sorted(SCANOBJECTNN_FILES)}')
    order = rng.permutation(num_points)
    return out[order].astype(np.float32), mask[idx][order].astype(np.int32)


def write_scanobjectnn(out_dir: Path, train: Sequence[SyntheticObject],
                       test: Sequence[SyntheticObject],
                       variants: Sequence[str] = ('OBJ_BG', 'OBJ_ONLY', 'PB_T50_RS'),
                       classes: Sequence[str] = OBJECT_CLASSES, num_points: int = 2048,
                       seed: int = 0) -> Path:
    """ScanObjectNN's ``h5_files``: ``{folder}/{training,test}_{stem}.h5`` with ``data``
    (S, 2048, 3) float32, ``label`` (S,) int64 and ``mask`` (S, 2048) int32 (-1 background)."""
    import h5py

    out = Path(out_dir)
    for variant in variants:
        folder, stem = SCANOBJECTNN_FILES[variant]
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / 'synthetic_shape_names.txt').write_text(
            ''.join(f'{c}\n' for c in classes))
        for split, objs in (('training', train), ('test', test)):
            rng = np.random.default_rng([seed, sorted(SCANOBJECTNN_FILES).index(variant),
                                         split == 'test'])
            clouds = [scanobjectnn_sample(o, variant, rng, num_points) for o in objs]
            data = np.stack([c[0] for c in clouds]).reshape(-1, num_points, 3)
            mask = np.stack([c[1] for c in clouds]).reshape(-1, num_points)
            with h5py.File(out / folder / f'{split}_{stem}.h5', 'w') as f:
                f.create_dataset('data', data=data)
                labels = [list(classes).index(o.class_name) for o in objs]
                f.create_dataset('label', data=np.array(labels, np.int64))
                f.create_dataset('mask', data=mask)
    return out


# ----------------------------------------------------------------------------- ShapeNetPart
def synthetic_synset(label: int) -> str:
    """An 8-digit synset-like id for synthetic class `label` (real synsets start with 0)."""
    return f'9{label:07d}'


def write_shapenet_part(out_dir: Path, train: Sequence[SyntheticObject],
                        val: Sequence[SyntheticObject], test: Sequence[SyntheticObject],
                        classes: Sequence[str] = OBJECT_CLASSES) -> Path:
    """``shapenetcore_partanno_segmentation_benchmark_v0_normal``: ``<synset>/<id>.txt`` rows
    "x y z nx ny nz part" (global part id), ``synsetoffset2category.txt``,
    ``train_test_split/shuffled_{train,val,test}_file_list.json``; plus ``seg_classes.json``."""
    out = Path(out_dir)
    (out / 'train_test_split').mkdir(parents=True, exist_ok=True)
    parts = global_part_ids(tuple(classes))
    (out / 'synsetoffset2category.txt').write_text(
        ''.join(f'{c}\t{synthetic_synset(OBJECT_CLASSES.index(c))}\n' for c in classes))
    (out / 'seg_classes.json').write_text(json.dumps(parts, indent=1))
    for split, objs in (('train', train), ('val', val), ('test', test)):
        entries = []
        for o in objs:
            synset = synthetic_synset(o.label)
            (out / synset).mkdir(exist_ok=True)
            part = np.asarray(parts[o.class_name])[o.part]
            rows = np.concatenate([o.xyz, o.normals, part[:, None]], axis=1)
            np.savetxt(out / synset / f'{o.name}.txt', rows, fmt='%.6f', delimiter=' ')
            entries.append(f'shape_data/{synset}/{o.name}')
        (out / 'train_test_split' / f'shuffled_{split}_file_list.json').write_text(
            json.dumps(entries))
    return out


# ----------------------------------------------------------------------------- ShapeNet-55
def write_object_views(view_dir: Path, obj: SyntheticObject, points_file: str) -> dict:
    """``<view_dir>/<k:02d>.png`` (+ ``_depth.png``, uint16, 1/1000 object units) and
    ``cameras.json`` (per view: file, world2cam, cam2img; world = the stored points' frame)."""
    from PIL import Image

    view_dir = Path(view_dir)
    view_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, v in enumerate(obj.views):
        Image.fromarray(v.rgb).save(view_dir / f'{k:02d}.png')
        depth = np.clip(np.round(v.depth * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(depth).save(view_dir / f'{k:02d}_depth.png')
        entries.append(dict(file=f'{k:02d}.png', depth_file=f'{k:02d}_depth.png',
                            height=int(v.rgb.shape[0]), width=int(v.rgb.shape[1]),
                            world2cam=v.world2cam.tolist(), cam2img=v.cam2img.tolist()))
    meta = dict(points=points_file, depth_scale=1000.0, views=entries)
    (view_dir / 'cameras.json').write_text(json.dumps(meta))
    return meta


def write_shapenet55(out_dir: Path, train: Sequence[SyntheticObject],
                     test: Sequence[SyntheticObject], num_points: int = 8192,
                     seed: int = 0) -> Path:
    """Point-BERT's ShapeNet-55: ``shapenet_pc/<synset>-<model>.npy`` (8192, 3) float32,
    ``ShapeNet-55/{train,test}.txt``; views in ``shapenet_views/<synset>-<model>/``."""
    out = Path(out_dir)
    (out / 'shapenet_pc').mkdir(parents=True, exist_ok=True)
    (out / 'ShapeNet-55').mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, objs in (('train', train), ('test', test)):
        lines = []
        for o in objs:
            key = f'{synthetic_synset(o.label)}-{o.name}'
            pts = o.xyz[_resample(rng, len(o.xyz), num_points)]
            np.save(out / 'shapenet_pc' / f'{key}.npy', pts.astype(np.float32))
            lines.append(f'{key}.npy\n')
            if o.views:
                write_object_views(out / 'shapenet_views' / key, o, f'shapenet_pc/{key}.npy')
        (out / 'ShapeNet-55' / f'{split}.txt').write_text(''.join(lines))
    return out
