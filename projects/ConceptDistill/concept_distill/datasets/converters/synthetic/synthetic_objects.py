"""`create_synthetic_objects`: one root holding synthetic objects in every real object layout.

    <root>/modelnet40_normal_resampled/                       ModelNet40 (text, with normals)
    <root>/modelnet40_ply_hdf5_2048/                          ModelNet40 (h5, 2,048 points)
    <root>/scanobjectnn/main_split{,_nobg}/                   ScanObjectNN h5 (3 variants)
    <root>/shapenetcore_partanno_segmentation_benchmark_v0_normal/   ShapeNetPart
    <root>/ShapeNet55/{shapenet_pc,ShapeNet-55,shapenet_views}/      ShapeNet-55 + views

The same objects go into every layout: per class, instances 1..n; the last `test_per_class`
are the test split (with `test_per_class=0` the test split is the train split, for
over-fitting runs) and the `val_per_class` before them are ShapeNetPart's val split (the
layouts without a val split put them in train).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.synthetic.object_layouts import (
    write_modelnet40_h5,
    write_modelnet40_normal_resampled,
    write_scanobjectnn,
    write_shapenet55,
    write_shapenet_part,
)
from concept_distill.datasets.converters.synthetic.objects import (
    OBJECT_CLASSES,
    SyntheticObject,
    make_object,
)

LAYOUTS = ('modelnet40', 'modelnet40_h5', 'scanobjectnn', 'shapenet_part', 'shapenet55')
FOLDERS = dict(modelnet40='modelnet40_normal_resampled', modelnet40_h5='modelnet40_ply_hdf5_2048',
               scanobjectnn='scanobjectnn',
               shapenet_part='shapenetcore_partanno_segmentation_benchmark_v0_normal',
               shapenet55='ShapeNet55')


def split_objects(objects: Sequence[SyntheticObject], test_per_class: int,
                  val_per_class: int = 0) -> dict[str, list[SyntheticObject]]:
    """Per class (instances in order): train | val (`val_per_class`) | test (the last ones)."""
    by_class: dict[str, list[SyntheticObject]] = {}
    for o in objects:
        by_class.setdefault(o.class_name, []).append(o)
    out: dict[str, list[SyntheticObject]] = dict(train=[], val=[], test=[])
    for objs in by_class.values():
        n_test = min(test_per_class, len(objs))
        n_val = min(val_per_class, len(objs) - n_test)
        n_train = len(objs) - n_test - n_val
        out['train'] += objs[:n_train]
        out['val'] += objs[n_train:n_train + n_val]
        out['test'] += objs[n_train + n_val:] if n_test else objs[:n_train]
    return out


def create_synthetic_objects(root: str | Path, num_per_class: int = 4, test_per_class: int = 1,
                             val_per_class: int = 0, seed: int = 0,
                             classes: Sequence[str] | None = None,
                             layouts: Sequence[str] = LAYOUTS, num_points: int = 10000,
                             shapenet_part_points: int = 2800, num_views: int = 2,
                             image_size: int = 128) -> dict:
    """Generate the objects and write them in `layouts`; returns a summary (paths, counts).

    `num_points` are sampled per object (ModelNet40's text files hold them all, as the real
    ones hold 10,000); ShapeNetPart files get `shapenet_part_points` of them (real files hold
    about 2,000-3,000), ShapeNet-55 8,192 and the h5 layouts 2,048. Views are rendered only
    for ShapeNet-55 (the pre-training pairs)."""
    root = Path(root)
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        raise ValueError(f'unknown layouts {sorted(unknown)}; known: {LAYOUTS}')
    names = tuple(classes) if classes is not None else OBJECT_CLASSES
    views = num_views if 'shapenet55' in layouts else 0
    objects = [make_object(c, i, seed, num_points=num_points, num_views=views,
                           image_size=image_size)
               for c in names for i in range(1, num_per_class + 1)]
    split = split_objects(objects, test_per_class, val_per_class)
    rng = np.random.default_rng(seed)
    # Layouts without a val split train on both (class-major order, as the objects).
    train = sorted(split['train'] + split['val'],
                   key=lambda o: (names.index(o.class_name), o.instance))
    paths = {}
    for layout in layouts:
        out = root / FOLDERS[layout]
        if layout == 'modelnet40':
            write_modelnet40_normal_resampled(out, train, split['test'], names)
        elif layout == 'modelnet40_h5':
            write_modelnet40_h5(out, train, split['test'], names, seed=seed)
        elif layout == 'scanobjectnn':
            write_scanobjectnn(out, train, split['test'], classes=names, seed=seed)
        elif layout == 'shapenet_part':
            sub = {k: [o.subset(shapenet_part_points, rng) for o in v] for k, v in split.items()}
            write_shapenet_part(out, sub['train'], sub['val'], sub['test'], names)
        elif layout == 'shapenet55':
            write_shapenet55(out, train, split['test'], seed=seed)
        paths[layout] = str(out)
    return dict(root=str(root), classes=list(names), paths=paths,
                counts={k: len(v) for k, v in split.items()})
