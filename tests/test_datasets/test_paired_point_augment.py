"""PairedPointAugment (the fused GlobalAlignment + RandomFlip3D + GlobalRotScaleTrans) against
mmdet3d's chain on ScanNet-format and real SUN RGB-D samples: same random draws, same points
(float32 round-off), same metadata and images; the lean PackPairedInputs packs the tensors the
old one did; the pre-training configs use the fused transform with the chain's parameters."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmdet3d.structures import Det3DDataSample
from mmdet3d.structures.points import DepthPoints, LiDARPoints
from mmengine.config import Config

from concept_distill.datasets.converters.frame_pairing import precompute_frame_pairs
from concept_distill.datasets.transforms.frustum_point_pairing import UV_ATTR, split_uv
from concept_distill.datasets.transforms.paired_point_augment import (
    CHAIN,
    fuse_point_augmentations,
)

SCANNET_CFG = REPO_ROOT / 'configs/_base_/datasets/scannet-paired.py'
SUN_CFG = REPO_ROOT / 'configs/_base_/datasets/sunrgbd-paired.py'
PRETRAIN = REPO_ROOT / 'configs/pretrain'
SYN = dict(num_scenes=2, seed=7, num_frames=3, points_per_scene=20000, image_size=(120, 160),
           val_scenes=1)
SUN = dict(ann_file='sunrgbd_000017_infos.pkl', data_prefix=dict(pts='', img=''))
# (horizontal, vertical) flip ratios: never, each alone, both, at random.
FLIPS = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5)]
# The minkunet pre-training config's augmentation: any yaw, scaling and a random shift.
WIDE = dict(rot_range=[-3.14159265, 3.14159265], scale_ratio_range=[0.9, 1.1],
            translation_std=[0.1, 0.1, 0.1])


@pytest.fixture(scope='module')
def prepared(synthetic_root, tmp_path_factory) -> Path:
    """Synthetic ScanNet-format scenes with every frame's pairs precomputed."""
    root = synthetic_root(copy_to=tmp_path_factory.mktemp('augment') / 'root', **SYN)
    summary = precompute_frame_pairs(str(root))
    assert summary['written'] == summary['frames']
    return root


def _pipeline_cfg(cfg_path: Path, image: bool = True, flips=(0.5, 0.5), sync_2d: bool = False,
                  **rot_scale) -> list[dict]:
    """The dataset config's training pipeline (mmdet3d's chain) with the given flips and
    rotation/scale/translation; `image=False`: the cached-teacher form (no image decoded)."""
    cfg = Config.fromfile(str(cfg_path))
    pipeline = [dict(t) for t in copy.deepcopy(cfg.train_pipeline)]
    for t in pipeline:
        if t['type'] == 'LoadPairedImage' and not image:
            t['with_pixels'] = False
        if t['type'] == 'FrustumPointPairing':
            t['min_points'] = 64
        if t['type'] == 'RandomFlip3D':
            t.update(flip_ratio_bev_horizontal=flips[0], flip_ratio_bev_vertical=flips[1],
                     sync_2d=sync_2d)
        if t['type'] == 'GlobalRotScaleTrans':
            t.update(rot_scale)
    return pipeline


def _dataset(root: Path, pipeline: list[dict], cfg_path: Path = SCANNET_CFG, **ds_kwargs):
    cfg = Config.fromfile(str(cfg_path))
    ds = copy.deepcopy(cfg.train_dataloader.dataset)
    ds.update(data_root=str(root), pipeline=pipeline, serialize_data=False,
              skip_bad_frames=False, **ds_kwargs)
    return DATASETS.build(ds)


def _split(ds):
    """(transforms before the chain, the chain, the rest) of a built dataset's pipeline."""
    ts = ds.pipeline.transforms
    idx = [i for i, t in enumerate(ts) if type(t).__name__ in CHAIN]
    assert idx == list(range(idx[0], idx[-1] + 1))
    return ts[:idx[0]], ts[idx[0]:idx[-1] + 1], ts[idx[-1] + 1:]


def _same_value(a, b, key: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, key
        assert torch.equal(a, b), (key, a, b)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, key
        assert np.array_equal(a, b), key
    else:
        assert type(a) is type(b) and a == b, (key, a, b)


def _same_points(a, b) -> None:
    """Same structure and columns; xyz within float32 round-off (the chain rounds after each
    of its steps), every other column bit for bit."""
    assert type(a) is type(b) and a.attribute_dims == b.attribute_dims
    ta, tb = a.tensor, b.tensor
    assert ta.shape == tb.shape and ta.dtype == tb.dtype == torch.float32
    # Coordinates up to ~10 m: float32 steps of ~1e-6 m, a few of them.
    np.testing.assert_allclose(ta[:, :3].numpy(), tb[:, :3].numpy(), rtol=0, atol=2e-5)
    assert torch.equal(ta[:, 3:], tb[:, 3:])


def _compare_transforms(ds, fused, seeds) -> list[tuple[bool, bool]]:
    """Run the chain and the fused transform on the same samples from the same random state;
    assert the same draws, points, images and keys. Returns the flips seen."""
    pre, chain, _ = _split(ds)
    seen = []
    for i in range(len(ds)):
        for seed in seeds:
            np.random.seed(seed)
            results = ds.get_data_info(i)
            for t in pre:
                results = t(results)
            a, b = copy.deepcopy(results), copy.deepcopy(results)
            state = np.random.get_state()
            for t in chain:
                a = t(a)
            after_chain = np.random.get_state()
            np.random.set_state(state)
            b = fused(b)
            after_fused = np.random.get_state()
            # The same numbers were drawn: everything later in the pipeline sees the same.
            assert after_chain[2] == after_fused[2]
            assert np.array_equal(after_chain[1], after_fused[1])
            assert set(a) == set(b), set(a) ^ set(b)
            _same_points(a['points'], b['points'])
            for key in a:
                if key != 'points':
                    _same_value(a[key], b[key], key)
            # Moved points, not a copy of the input (the augmentation did run).
            assert not torch.allclose(a['points'].tensor[:, :3], results['points'].tensor[:, :3])
            seen.append((a['pcd_horizontal_flip'], a['pcd_vertical_flip']))
    return seen


@pytest.mark.parametrize('flips', FLIPS)
@pytest.mark.parametrize('image', [True, False], ids=['image', 'cached'])
def test_fused_equals_chain_scannet(prepared, flips, image):
    """ScanNet frames from precomputed pairs, aligned, flipped (and the image flipped when
    decoded), rotated: the fused transform's points, images and metadata are the chain's."""
    pipeline = _pipeline_cfg(SCANNET_CFG, image=image, flips=flips)
    ds = _dataset(prepared, pipeline)
    fused_cfg = fuse_point_augmentations(pipeline)
    (aug,) = [t for t in fused_cfg if t['type'] == 'PairedPointAugment']
    assert aug['align_rotation_axis'] == 2
    seen = _compare_transforms(ds, TRANSFORMS.build(aug), seeds=range(4))
    if flips != (0.5, 0.5):
        assert set(seen) == {(flips[0] == 1.0, flips[1] == 1.0)}
    else:
        assert len(set(seen)) > 1  # the random flips took more than one value


@pytest.mark.parametrize('sync_2d', [True, False])
def test_fused_equals_chain_with_scaling_translation_and_image_sync(prepared, sync_2d):
    """The wide augmentation (any yaw, scale 0.9-1.1 with shift_height, random shift) and the
    points flip tied to the image flip (sync_2d)."""
    pipeline = _pipeline_cfg(SCANNET_CFG, flips=(0.5, 0.5), sync_2d=sync_2d, **WIDE)
    ds = _dataset(prepared, pipeline)
    (aug,) = [t for t in fuse_point_augmentations(pipeline) if t['type'] == 'PairedPointAugment']
    assert aug['shift_height'] is True and aug['translation_std'] == [0.1, 0.1, 0.1]
    seen = _compare_transforms(ds, TRANSFORMS.build(aug), seeds=range(6))
    if sync_2d:
        assert all(not v for _, v in seen)  # RandomFlip3D flips only horizontally then
    assert len(set(seen)) > 1


def test_fused_equals_chain_real_sunrgbd(fixtures_root):
    """The real SUN RGB-D frame (no alignment step), with its colours kept as attributes."""
    pipeline = _pipeline_cfg(SUN_CFG, flips=(0.5, 0.0), **WIDE)
    pipeline[0].update(shift_height=True, use_dim=[0, 1, 2, 3, 4, 5], use_color=True)
    ds = _dataset(fixtures_root / 'sunrgbd', pipeline, SUN_CFG, **SUN)
    (aug,) = [t for t in fuse_point_augmentations(pipeline) if t['type'] == 'PairedPointAugment']
    assert 'align_rotation_axis' not in aug
    seen = _compare_transforms(ds, TRANSFORMS.build(aug), seeds=range(12))
    assert len(set(seen)) == 2


@pytest.mark.parametrize('cfg_path,root_kind', [(SCANNET_CFG, 'syn'), (SUN_CFG, 'sun')])
def test_packed_samples_equal_the_chain(prepared, fixtures_root, cfg_path, root_kind):
    """Whole packed samples: chain pipeline and fused pipeline, same seeds."""
    root, kw = (prepared, {}) if root_kind == 'syn' else (fixtures_root / 'sunrgbd', SUN)
    pipeline = _pipeline_cfg(cfg_path)
    chain = _dataset(root, pipeline, cfg_path, **kw)
    fused = _dataset(root, fuse_point_augmentations(pipeline), cfg_path, **kw)
    assert 'PairedPointAugment' in [type(t).__name__ for t in fused.pipeline.transforms]
    for i in range(len(chain)):
        for seed in range(3):
            np.random.seed(seed)
            a = chain[i]
            np.random.seed(seed)
            b = fused[i]
            pa, pb = a['inputs']['points'], b['inputs']['points']
            np.testing.assert_allclose(pa[:, :3].numpy(), pb[:, :3].numpy(), rtol=0, atol=2e-5)
            assert torch.equal(pa[:, 3:], pb[:, 3:])
            assert torch.equal(a['inputs']['img'], b['inputs']['img'])
            ma, mb = a['data_samples'], b['data_samples']
            assert torch.equal(ma.pixel_uv, mb.pixel_uv)
            assert set(ma.metainfo) == set(mb.metainfo)
            for key, value in ma.metainfo.items():
                _same_value(value, mb.metainfo[key], key)


def _old_pack(points) -> tuple[torch.Tensor, torch.Tensor]:
    """What PackPairedInputs packed before: split_uv's new points and uv, as float."""
    rest, uv = split_uv(points)
    return rest.tensor.float(), uv.float()


def test_lean_packing_gives_the_old_tensors(prepared):
    pipeline = _pipeline_cfg(SCANNET_CFG, image=False, flips=(1.0, 0.0))
    ds = _dataset(prepared, fuse_point_augmentations(pipeline))
    *steps, pack = ds.pipeline.transforms
    np.random.seed(0)
    results = ds.get_data_info(1)
    for t in steps:
        results = t(results)
    points = results['points']
    want_pts, want_uv = _old_pack(points)
    before = points.tensor.clone()
    out = pack(dict(results))
    got_pts, got_uv = out['inputs']['points'], out['data_samples'].pixel_uv
    for got, want in ((got_pts, want_pts), (got_uv, want_uv)):
        assert got.dtype == want.dtype and got.shape == want.shape and got.is_contiguous()
        assert torch.equal(got, want)
    # The metadata the old set_metainfo (copy.deepcopy) gave: same keys, types and values.
    old = Det3DDataSample()
    old.set_metainfo({k: results[k] for k in pack.meta_keys if k in results})
    meta = out['data_samples'].metainfo
    assert set(meta) == set(old.metainfo) >= {'pcd_rotation', 'transformation_3d_flow',
                                              'lidar2img', 'axis_align_matrix'}
    for key, value in old.metainfo.items():
        _same_value(value, meta[key], key)
    # Copies, as before: the packed tensors and metadata do not alias the sample's.
    points.tensor.add_(1.0)
    results['transformation_3d_flow'].append('X')
    results['pcd_rotation'].add_(1.0)
    np.asarray(results['axis_align_matrix'])[...] = 0
    assert torch.equal(got_pts, want_pts) and torch.equal(got_uv, want_uv)
    assert torch.equal(points.tensor, before + 1.0)
    for key, value in old.metainfo.items():
        _same_value(value, meta[key], key)


def test_packing_with_pixels_not_last():
    """Points whose pixel columns are not the last two take split_uv's general path."""
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(50, 7)).astype(np.float32)
    points = DepthPoints(arr.copy(), points_dim=7,
                         attribute_dims={'height': 3, UV_ATTR: [4, 5], 'extra': 6})
    want_pts, want_uv = _old_pack(points)
    pack = TRANSFORMS.build(dict(type='PackPairedInputs'))
    out = pack(dict(points=points, img_shape=(10, 10), frame_id='f'))
    assert torch.equal(out['inputs']['points'], want_pts)
    assert torch.equal(out['data_samples'].pixel_uv, want_uv)
    assert torch.equal(want_uv, torch.from_numpy(arr[:, 4:6]))
    with pytest.raises(KeyError, match='pixel_uv'):
        pack(dict(points=DepthPoints(arr, points_dim=7), img_shape=(10, 10)))


def test_refuses_what_it_does_not_fuse():
    aug = TRANSFORMS.build(dict(type='PairedPointAugment', align_rotation_axis=2))
    pts = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match='DEPTH'):
        aug(dict(points=LiDARPoints(pts.copy(), points_dim=3)))
    with pytest.raises(ValueError, match='boxes'):
        aug(dict(points=DepthPoints(pts.copy(), points_dim=3), gt_bboxes_3d=object()))
    tilted = np.eye(4)
    tilted[:3, :3] = [[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]]  # about x, not z
    with pytest.raises(ValueError, match='invalid rotation'):
        aug(dict(points=DepthPoints(pts.copy(), points_dim=3), axis_align_matrix=tilted))
    with pytest.raises(KeyError, match='height'):
        TRANSFORMS.build(dict(type='PairedPointAugment', shift_height=True))(
            dict(points=DepthPoints(pts.copy(), points_dim=3)))
    with pytest.raises(ValueError, match='flip_ratio'):
        TRANSFORMS.build(dict(type='PairedPointAugment', flip_ratio_bev_vertical=2))
    chain = [dict(type='RandomFlip3D'), dict(type='Other'), dict(type='GlobalRotScaleTrans')]
    with pytest.raises(ValueError, match='contiguous'):
        fuse_point_augmentations(chain)
    assert fuse_point_augmentations(chain[:2]) == chain[:2]


def _train_pipeline(name: str) -> list:
    return Config.fromfile(str(PRETRAIN / name)).train_dataloader.dataset.pipeline


@pytest.mark.parametrize('pretrain,dataset', [
    ('pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py', SCANNET_CFG),
    ('3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py', SCANNET_CFG),
    ('pointnet2-sassg_concept-distill_8xb8-100e_sunrgbd-pairs.py', SUN_CFG)])
def test_pretrain_configs_fuse_the_dataset_chain(pretrain, dataset):
    """The pre-training configs train with the dataset config's pipeline, the chain replaced
    by PairedPointAugment with the same parameters; validation keeps the dataset's."""
    base = Config.fromfile(str(dataset))
    assert _train_pipeline(pretrain) == fuse_point_augmentations(base.train_pipeline)
    assert not {t.type for t in _train_pipeline(pretrain)} & set(CHAIN)
    cfg = Config.fromfile(str(PRETRAIN / pretrain))
    assert cfg.val_dataloader.dataset.pipeline == base.test_pipeline


def test_minkunet_and_demo_configs_use_the_fused_transform():
    mink = _train_pipeline('minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames.py')
    (aug,) = [t for t in mink if t.type == 'PairedPointAugment']
    assert dict(aug) == dict(type='PairedPointAugment', sync_2d=False,
                             flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5, **WIDE)
    assert [t.type for t in mink][-2:] == ['NormalizePointsColor', 'PackPairedInputs']
    demo = Config.fromfile(str(REPO_ROOT / 'configs/demo/pretrain_pointnet2_synthetic.py'))
    scannet = Config.fromfile(str(SCANNET_CFG))
    (aug,) = [t for t in demo.train_dataloader.dataset.pipeline
              if t.type == 'PairedPointAugment']
    (want,) = [t for t in fuse_point_augmentations(scannet.train_pipeline)
               if t['type'] == 'PairedPointAugment']
    assert dict(aug) == want
    assert 'GlobalAlignment' in [t.type for t in demo.val_dataloader.dataset.pipeline]
    for pipeline in (mink, demo.train_dataloader.dataset.pipeline):
        assert not {t.type for t in pipeline} & set(CHAIN)
