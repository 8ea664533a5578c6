"""Downstream data of the transfer benchmark: held-out synthetic objects and their views.

The clouds are read with the project's `ModelNet40Dataset` from a
``modelnet40_normal_resampled`` root; the teacher reference reads the *same* objects'
rendered views from the ShapeNet-55 view folders of the same root
(``ShapeNet55/shapenet_views/<synset>-<shape id>/``), which ``create_downstream_root``
writes next to it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODELNET_DIR = 'modelnet40_normal_resampled'
VIEWS_SUBDIR = Path('ShapeNet55') / 'shapenet_views'
# The output-guard record of a downstream root (``.create_data.json``) names this command.
DOWNSTREAM_COMMAND = 'transfer-downstream'


@dataclass
class ObjectSplit:
    """The raw clouds of one split: per object its points (Ni, 3), label and shape id."""

    clouds: list[np.ndarray]
    labels: np.ndarray  # (N,) int64
    shape_ids: list[str]
    classes: tuple[str, ...]

    def sample(self, num_points: int, seed: int) -> torch.Tensor:
        """(N, num_points, 3) float32: a seeded random subset of each cloud, normalised into
        the unit sphere (the project's ObjectPointSample + NormalizeObjectPoints)."""
        from concept_distill.datasets.object_datasets.object_transforms import (
            NormalizeObjectPoints,
            ObjectPointSample,
        )

        pick = ObjectPointSample(num_points, method='random', deterministic=True, seed=seed)
        norm = NormalizeObjectPoints()
        out = [norm.transform(pick.transform(dict(points=c, sample_idx=i)))['points']
               for i, c in enumerate(self.clouds)]
        return torch.from_numpy(np.stack(out).astype(np.float32))


def load_object_split(data_root: str | os.PathLike, split: str) -> ObjectSplit:
    """All clouds of a ``modelnet40_normal_resampled`` split, read with ModelNet40Dataset."""
    from concept_distill.datasets.object_datasets.modelnet40 import ModelNet40Dataset

    ds = ModelNet40Dataset(data_root=str(data_root), split=split, pipeline=[], test_mode=True)
    items = [ds.get_data_info(i) for i in range(len(ds))]
    return ObjectSplit(clouds=[it['points'][:, :3] for it in items],
                       labels=np.asarray([it['gt_label'] for it in items], dtype=np.int64),
                       shape_ids=[it['shape_id'] for it in items],
                       classes=tuple(ds.metainfo['classes']))


def create_downstream_root(out_dir: str | os.PathLike, classes: Sequence[str],
                           num_per_class: int, test_per_class: int, seed: int,
                           num_views: int = 4, image_size: int = 128) -> Path:
    """Synthetic objects (instances of `seed`) as ModelNet40 clouds plus their rendered views.

    Written under the converters' output guard (``output_guard.run_guarded``): a root made
    with the same arguments is reused, anything else in a non-empty folder is an error,
    never overwritten, and the record is written last, so a killed run is not reused."""
    from concept_distill.datasets.converters.output_guard import run_guarded
    from concept_distill.datasets.converters.synthetic.synthetic_objects import (
        create_synthetic_objects,
    )

    out = Path(out_dir)
    args = dict(classes=list(classes), num_per_class=num_per_class,
                test_per_class=test_per_class, seed=seed, num_views=num_views,
                image_size=image_size)
    run_guarded(out, DOWNSTREAM_COMMAND, args, False, lambda: create_synthetic_objects(
        out, num_per_class=num_per_class, test_per_class=test_per_class, val_per_class=0,
        seed=seed, classes=classes, layouts=('modelnet40', 'shapenet55'),
        num_views=num_views, image_size=image_size))
    return out


def view_folders(views_dir: str | os.PathLike) -> dict[str, Path]:
    """shape id -> its view folder (``<synset>-<shape id>``) under a shapenet_views folder."""
    base = Path(views_dir)
    if not base.is_dir():
        raise FileNotFoundError(f'{base}: no view folder (the teacher reference needs the '
                                f'rendered views of the downstream objects)')
    return {p.name.split('-', 1)[1]: p for p in base.iterdir() if p.is_dir() and '-' in p.name}


@torch.no_grad()
def teacher_embeddings(teacher: torch.nn.Module, views_dir: str | os.PathLike,
                       shape_ids: Sequence[str]) -> np.ndarray:
    """(N, D): the teacher's global embedding of each object, averaged over its views."""
    from concept_distill.transfer.render_teacher import read_views

    folders = view_folders(views_dir)
    missing = [s for s in shape_ids if s not in folders]
    if missing:
        raise FileNotFoundError(f'{views_dir}: no views of {len(missing)} objects, e.g. '
                                f'{missing[:3]}')
    out = []
    for sid in shape_ids:
        views = torch.from_numpy(read_views(folders[sid])).permute(0, 3, 1, 2).contiguous()
        out.append(teacher(views)['global'].mean(dim=0))
    return torch.stack(out).numpy()


__all__ = ['DOWNSTREAM_COMMAND', 'MODELNET_DIR', 'VIEWS_SUBDIR', 'ObjectSplit',
           'create_downstream_root', 'load_object_split', 'teacher_embeddings', 'view_folders']
