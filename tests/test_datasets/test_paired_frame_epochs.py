"""PairedFrameDataset over epochs (issue 17): a per-epoch frame offset that uses every frame,
deterministic test passes (seeded sampling, offset 0) and galleries without duplicate pairs."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from concept_distill.datasets.paired_collate import paired_collate
from concept_distill.datasets.paired_frame_dataset import frame_selection
from concept_distill.hooks.frame_epoch_hook import FrameEpochHook

NUM_FRAMES = 7


@pytest.fixture(scope='module')
def pristine(synthetic_root) -> Path:
    # Two training scenes (the third is the val split, unused here).
    return synthetic_root(num_scenes=3, val_scenes=1, seed=3, num_frames=NUM_FRAMES,
                          points_per_scene=8000, image_size=(48, 64))


def _dataset(root: Path, split: str = 'train', pipeline: list | None = None, **kwargs):
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/scannet-paired.py'))
    ds = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    ds.update(data_root=str(root), ann_file='scannet_infos_train.pkl', **kwargs)
    if pipeline is not None:
        ds.pipeline = pipeline
    for t in ds.pipeline:
        if t['type'] == 'FrustumPointPairing':
            t.update(num_points=128, min_points=16)
    return DATASETS.build(ds)


def _ids(ds) -> list[str]:
    return [ds.get_data_info(i)['frame_id'] for i in range(len(ds))]


def test_frame_selection_covers_every_frame_with_a_constant_length():
    groups = np.repeat([0, 1, 2], [23, 5, 1])
    rng = np.random.default_rng(0)
    picks = [frame_selection(groups, 10, None, rng) for _ in range(40)]
    assert {len(p) for p in picks} == {3 + 1 + 1}  # ceil(23/10) + ceil(5/10) + 1
    assert all(len(set(p.tolist())) == len(p) for p in picks)  # no frame twice in an epoch
    assert set(np.concatenate(picks).tolist()) == set(range(29))  # all frames over epochs
    assert frame_selection(groups, 10, None, None).tolist() == [0, 10, 20, 23, 28]
    capped = frame_selection(groups, 2, 3, None)  # 12 strided frames of scene 0 -> 3
    assert capped[:3].tolist() == [0, 12, 22]


def test_offset_per_epoch_is_seeded_and_test_mode_starts_at_zero(pristine):
    empty: list = []  # the infos only: no file is read
    ds = _dataset(pristine, pipeline=empty, frame_stride=3)
    assert ds.num_frames == 2 * NUM_FRAMES
    seen, per_epoch = set(), []
    for epoch in range(30):
        ds.set_epoch(epoch)
        per_epoch.append(_ids(ds))
        seen |= set(per_epoch[-1])
    assert {len(ids) for ids in per_epoch} == {2 * 3}  # ceil(7 / 3) per scene, every epoch
    assert len({tuple(ids) for ids in per_epoch}) > 1  # the offset moves
    assert len(seen) == 2 * NUM_FRAMES  # every exported frame is used over the epochs
    again = _dataset(pristine, pipeline=empty, frame_stride=3)
    again.set_epoch(5)
    ds.set_epoch(5)
    assert _ids(again) == _ids(ds)  # reproducible
    other = _dataset(pristine, pipeline=empty, frame_stride=3, offset_seed=1)
    assert [(other.set_epoch(e), _ids(other))[1] for e in range(30)] != per_epoch
    test = _dataset(pristine, pipeline=empty, frame_stride=3, test_mode=True)
    first = _ids(test)
    test.set_epoch(3)
    every = [test.get_frame_info(p)['frame_id'] for p in range(test.num_frames)]
    assert _ids(test) == first == [every[s * NUM_FRAMES + i] for s in (0, 1) for i in (0, 3, 6)]


def test_persistent_workers_see_the_new_epoch(pristine):
    """The hook's set_epoch reaches workers forked before it (shared memory)."""
    ds = _dataset(pristine, pipeline=[], frame_stride=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=1,
                                         persistent_workers=True, collate_fn=lambda b: b,
                                         multiprocessing_context='fork')
    runner = type('R', (), {})()
    runner.train_loop = type('L', (), {'dataloader': loader})()
    got = []
    for epoch in range(6):
        runner.epoch = epoch
        FrameEpochHook().before_train_epoch(runner)
        got.append(sorted(item['frame_id'] for batch in loader for item in batch))
        assert got[-1] == sorted(_ids(ds))  # the worker drew the main process's epoch
    assert len({tuple(g) for g in got}) > 1


def test_two_validation_passes_draw_the_same_points(pristine):
    val = _dataset(pristine, 'val')
    a, b = val[1], val[1]
    assert torch.equal(a['inputs']['points'], b['inputs']['points'])
    assert torch.equal(a['data_samples'].pixel_uv, b['data_samples'].pixel_uv)
    state = np.random.get_state()[1].copy()
    val[2]
    assert np.array_equal(np.random.get_state()[1], state)  # the global stream is untouched
    train = _dataset(pristine, 'train')
    assert not torch.equal(train[1]['inputs']['points'], train[1]['inputs']['points'])


def test_bad_frame_is_not_replaced_by_a_frame_of_the_gallery(pristine, tmp_path):
    root = Path(shutil.copytree(pristine, tmp_path / 'root'))
    val = _dataset(root, 'val')
    info = [val.get_frame_info(p) for p in range(val.num_frames)]
    Path(info[3]['img_path']).unlink()  # frame 3 of the first scene
    # Stride 1: every frame is in the gallery, so the bad one is dropped and counted.
    assert val[3] is None
    assert val.skip_counts == {'missing_image': 1, 'dropped_from_gallery': 1}
    loader = torch.utils.data.DataLoader(val, batch_size=4, collate_fn=paired_collate)
    ids = [s.frame_id for batch in loader for s in batch['data_samples']]
    assert len(ids) == len(set(ids)) == 2 * NUM_FRAMES - 1
    assert info[3]['frame_id'] not in ids
    # Stride 3 leaves frames out of the pass: the nearest one of the scene replaces it.
    strided = _dataset(root, 'val', frame_stride=3)
    gallery = _ids(strided)
    assert gallery[1] == info[3]['frame_id']
    replaced = strided[1]['data_samples'].frame_id
    assert replaced == info[2]['frame_id'] and replaced not in gallery
    with pytest.raises(Exception, match='all 2 frames of a validation batch'):
        paired_collate([None, None])
