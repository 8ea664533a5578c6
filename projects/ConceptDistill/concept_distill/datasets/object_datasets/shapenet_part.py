"""ShapeNetPart reader: ``shapenetcore_partanno_segmentation_benchmark_v0_normal``.

``<synset>/<id>.txt``: rows "x y z nx ny nz part" (part: a global part id 0-49);
``synsetoffset2category.txt``: lines "<Category>\\t<synset>"; ``train_test_split/
shuffled_{train,val,test}_file_list.json``: lists of "shape_data/<synset>/<id>". The 16
categories own fixed ranges of the 50 part ids (``SHAPENET_PART_SEG_CLASSES``); another
category set (synthetic objects) brings its own table as ``seg_classes_file`` (JSON
{category: [part ids]}) or ``metainfo=dict(seg_classes=...)``.
"""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
from mmdet3d.registry import DATASETS

from concept_distill.datasets.object_datasets.base import (
    ObjectDataError,
    ObjectPointDataset,
    read_lines,
    read_point_rows,
    require_file,
)

_RANGES = (('Airplane', 0, 4), ('Bag', 4, 6), ('Cap', 6, 8), ('Car', 8, 12), ('Chair', 12, 16),
           ('Earphone', 16, 19), ('Guitar', 19, 22), ('Knife', 22, 24), ('Lamp', 24, 28),
           ('Laptop', 28, 30), ('Motorbike', 30, 36), ('Mug', 36, 38), ('Pistol', 38, 41),
           ('Rocket', 41, 44), ('Skateboard', 44, 47), ('Table', 47, 50))
SHAPENET_PART_SEG_CLASSES: dict[str, list[int]] = {n: list(range(a, b)) for n, a, b in _RANGES}
SHAPENET_PART_SYNSETS = {
    'Airplane': '02691156', 'Bag': '02773838', 'Cap': '02954340', 'Car': '02958343',
    'Chair': '03001627', 'Earphone': '03261776', 'Guitar': '03467517', 'Knife': '03624134',
    'Lamp': '03636649', 'Laptop': '03642806', 'Motorbike': '03790512', 'Mug': '03797390',
    'Pistol': '03948459', 'Rocket': '04099429', 'Skateboard': '04225987', 'Table': '04379243'}
SPLITS = {'train': ('train',), 'val': ('val',), 'test': ('test',), 'trainval': ('train', 'val')}


@DATASETS.register_module()
class ShapeNetPartDataset(ObjectPointDataset):
    """ShapeNetPart; items: `points` (N, 3 or 6), `part_labels` (N,) global part ids,
    `category` (index into metainfo `classes`), `part_ids` (that category's part ids).

    Args:
        split: 'train', 'val', 'test' or 'trainval' (train + val, the usual training set).
        class_choice: keep only these categories (names of synsetoffset2category.txt).
        seg_classes_file: JSON {category: [part ids]} relative to data_root (default: the
            metainfo's `seg_classes`, else the 16 standard categories).
    """

    METAINFO = dict(classes=tuple(SHAPENET_PART_SEG_CLASSES), dataset='shapenet_part')

    def __init__(self, data_root: str, split: str = 'trainval',
                 class_choice: list[str] | None = None, seg_classes_file: str | None = None,
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'ShapeNetPart split must be one of {sorted(SPLITS)}, got {split!r}')
        self.class_choice = class_choice
        self.seg_classes_file = seg_classes_file
        super().__init__(data_root=data_root, split=split, **kwargs)

    def _seg_classes(self, categories: list[str], cat_file: str) -> dict[str, list[int]]:
        if self.seg_classes_file:
            path = require_file(osp.join(self.data_root, self.seg_classes_file),
                                'part table (seg_classes_file)')
            try:
                with open(path) as f:
                    table = json.load(f)
            except json.JSONDecodeError as e:
                raise ObjectDataError(f'{path}: not JSON ({e})', path) from e
            source = path
        else:
            table = self._metainfo.get('seg_classes') or SHAPENET_PART_SEG_CLASSES
            source = 'the standard ShapeNetPart part table'
        missing = [c for c in categories if c not in table]
        if missing:
            raise ObjectDataError(f'{cat_file}: categories {missing} have no part ids in '
                                  f'{source}', cat_file)
        return {c: [int(p) for p in table[c]] for c in categories}

    def load_data_list(self) -> list[dict]:
        """Categories, part table and the split's shapes."""
        cat_file = osp.join(self.data_root, 'synsetoffset2category.txt')
        cat2synset = {}
        for line in read_lines(cat_file, 'ShapeNetPart category list'):
            fields = line.split()
            if len(fields) != 2:
                raise ObjectDataError(f'{cat_file}: expected "<Category> <synset>", got '
                                      f'{line!r}', cat_file)
            cat2synset[fields[0]] = fields[1]
        categories = list(cat2synset)
        if self.class_choice:
            unknown = [c for c in self.class_choice if c not in cat2synset]
            if unknown:
                raise ValueError(f'class_choice {unknown} not in {cat_file}')
        seg_classes = self._seg_classes(categories, cat_file)
        self._metainfo.update(classes=tuple(categories), seg_classes=seg_classes,
                              num_parts=1 + max(p for v in seg_classes.values() for p in v))
        synset2cat = {s: c for c, s in cat2synset.items()}
        keep = set(self.class_choice or categories)
        out = []
        for part in SPLITS[self.split]:
            list_file = osp.join(self.data_root, 'train_test_split',
                                 f'shuffled_{part}_file_list.json')
            require_file(list_file, 'ShapeNetPart split list')
            try:
                with open(list_file) as f:
                    entries = json.load(f)
            except json.JSONDecodeError as e:
                raise ObjectDataError(f'{list_file}: not JSON ({e})', list_file) from e
            for entry in entries:
                fields = entry.split('/')
                if len(fields) < 2 or fields[-2] not in synset2cat:
                    raise ObjectDataError(f'{list_file}: entry {entry!r} names no synset of '
                                          f'synsetoffset2category.txt', list_file)
                synset, shape = fields[-2], fields[-1]
                cat = synset2cat[synset]
                if cat not in keep:
                    continue
                out.append(dict(shape_id=f'{synset}/{shape}', category=categories.index(cat),
                                category_name=cat, part_ids=seg_classes[cat],
                                points_path=osp.join(self.data_root, synset, f'{shape}.txt')))
        return out

    def load_points(self, info: dict) -> dict:
        """The shape's points and part labels (checked against its category's parts)."""
        path = info['points_path']
        rows = read_point_rows(path, 7, 'ShapeNetPart point file')
        labels = np.round(rows[:, 6]).astype(np.int64)
        bad = ~np.isin(labels, info['part_ids'])
        if bad.any():
            raise ObjectDataError(f'{path}: part ids {sorted(set(labels[bad].tolist()))[:5]} '
                                  f'are not parts of {info["category_name"]} '
                                  f'{info["part_ids"]}', path)
        points = rows[:, :6] if self.use_normals else rows[:, :3]
        return dict(points=np.ascontiguousarray(points), part_labels=labels)
