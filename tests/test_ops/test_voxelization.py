"""MinkUNet voxelisation on the input's device (mmdet3d's version hard-codes `.cuda()`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.structures import Det3DDataSample, PointData

from concept_distill.ops import quantize_points, voxelize_minkunet
from concept_distill.patches.minkunet_voxelization import (
    install as install_device_aware_minkunet_voxelization,
)
from concept_distill.patches.minkunet_voxelization import (
    installed as device_aware_minkunet_voxelization_installed,
)

VOXEL = 0.05


def _preprocessor(max_voxels: int | None = None, batch_first: bool = True
                  ) -> Det3DDataPreprocessor:
    return Det3DDataPreprocessor(
        voxel=True, voxel_type='minkunet', batch_first=batch_first, max_voxels=max_voxels,
    voxel_layer=dict(max_num_points=-1, point_cloud_range=[-100, -100, -20, 100, 100, 20],
    voxel_size=[VOXEL] * 3, max_voxels=(-1, -1)))


def _scene(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clustered points (many share a voxel) with colours and labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 8, 3, generator=g) * 2.0 - 1.0
    xyz = centres.repeat_interleave(8, 0) + 0.01 * torch.randn(n // 8 * 8, 3, generator=g)
    rgb = torch.rand(xyz.shape[0], 3, generator=g)
    labels = torch.randint(0, 5, (xyz.shape[0], ), generator=g)
    return torch.cat([xyz, rgb], 1), labels


def _batch(scenes: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    samples = []
    for _, labels in scenes:
        s = Det3DDataSample()
        s.gt_pts_seg = PointData(pts_semantic_mask=labels.clone())
        samples.append(s)
    return dict(inputs=dict(points=[p.clone() for p, _ in scenes]), data_samples=samples)


def test_installed_on_import_and_idempotent() -> None:
    assert device_aware_minkunet_voxelization_installed()
    before = Det3DDataPreprocessor.voxelize
    install_device_aware_minkunet_voxelization()
    assert Det3DDataPreprocessor.voxelize is before  # not wrapped twice


def test_quantize_matches_mmdet3d_numpy_quantisation() -> None:
    """Same voxels, same order, same representative points as mmdet3d's sparse_quantize."""
    points, _ = _scene(400, seed=0)
    coors, first, point2voxel = quantize_points(points[:, :3], torch.full((3, ), VOXEL))
    ref_coors = torch.round(points[:, :3] / VOXEL).int()
    ref_coors -= ref_coors.min(0)[0]
    ref_first, ref_inverse = _preprocessor().sparse_quantize(
        ref_coors.numpy(), return_index=True, return_inverse=True)
    assert torch.equal(coors, ref_coors)
    np.testing.assert_array_equal(first.numpy(), ref_first)
    np.testing.assert_array_equal(point2voxel.numpy(), ref_inverse.reshape(-1))
    assert len(ref_first) < len(points)  # the scene really has shared voxels


def test_cpu_preprocessor_matches_mmdet3d_original(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our CPU path gives exactly what mmdet3d's code gives when `.cuda()` is a no-op."""
    scenes = [_scene(400, seed=1), _scene(240, seed=2)]
    ours_pre = _preprocessor()
    ours = ours_pre(_batch(scenes), training=True)

    original = Det3DDataPreprocessor.voxelize.__wrapped__
    monkeypatch.setattr(torch.Tensor, 'cuda', lambda self, *a, **k: self)
    monkeypatch.setattr(Det3DDataPreprocessor, 'voxelize', original)
    ref = _preprocessor()(_batch(scenes), training=True)

    for key in ('voxels', 'coors'):
        assert torch.equal(ours['inputs']['voxels'][key], ref['inputs']['voxels'][key]), key
    assert ours['inputs']['voxels']['coors'].device.type == 'cpu'
    for s_ours, s_ref in zip(ours['data_samples'], ref['data_samples']):
        assert torch.equal(s_ours.point2voxel_map, s_ref.point2voxel_map)
        assert torch.equal(s_ours.batch_idx, s_ref.batch_idx)
        assert torch.equal(s_ours.gt_pts_seg.voxel_semantic_mask,
    s_ref.gt_pts_seg.voxel_semantic_mask)


@pytest.mark.parametrize('batch_first', [True, False])
def test_voxels_are_consistent_with_points(batch_first: bool) -> None:
    scenes = [_scene(320, seed=3), _scene(160, seed=4)]
    out = _preprocessor(batch_first=batch_first)(_batch(scenes), training=False)
    vox = out['inputs']['voxels']
    coors = vox['coors']
    batch_col = 0 if batch_first else -1
    xyz_cols = [1, 2, 3] if batch_first else [0, 1, 2]
    assert coors.dtype == torch.int32 and coors.shape[1] == 4
    offset = 0
    for i, ((points, labels), sample) in enumerate(zip(scenes, out['data_samples'])):
        mine = coors[:, batch_col] == i
        n_vox = int(mine.sum())
        assert torch.equal(sample.batch_idx, coors[mine, batch_col])
        p2v = sample.point2voxel_map
        assert p2v.shape == (len(points), ) and int(p2v.max()) == n_vox - 1
        # every point's own voxel coordinate equals the coordinate of the voxel it maps to
        own = torch.round(points[:, :3] / VOXEL).int()
        own -= own.min(0)[0]
        assert torch.equal(coors[mine][:, xyz_cols][p2v], own)
        # voxel features are those of a point inside the voxel
        voxel_feats = vox['voxels'][offset:offset + n_vox]
        assert torch.equal(torch.round(voxel_feats[:, :3] / VOXEL).int() - torch.round(
            points[:, :3] / VOXEL).int().min(0)[0], coors[mine][:, xyz_cols])
        # a voxel's label and features are those of its first point (as in mmdet3d)
        first = torch.full((n_vox, ), len(points)).scatter_reduce(
            0, p2v, torch.arange(len(points)), reduce='amin')
        assert torch.equal(sample.gt_pts_seg.voxel_semantic_mask, labels[first])
        assert torch.equal(voxel_feats, points[first])
        offset += n_vox
    assert offset == coors.shape[0]


def test_max_voxels_subsampling_keeps_a_valid_point_map() -> None:
    points, labels = _scene(400, seed=5)
    n_all = int(quantize_points(points[:, :3], torch.full((3, ), VOXEL))[1].shape[0])
    pre = _preprocessor(max_voxels=20)
    pre.train()
    out = pre(_batch([(points, labels)]), training=True)
    sample = out['data_samples'][0]
    assert n_all > 20 and out['inputs']['voxels']['coors'].shape[0] == 20
    p2v = sample.point2voxel_map
    kept = p2v >= 0
    assert 0 < int(kept.sum()) < len(points) and int(p2v.max()) == 19
    own = torch.round(points[:, :3] / VOXEL).int()
    own -= own.min(0)[0]
    assert torch.equal(out['inputs']['voxels']['coors'][p2v[kept]][:, 1:], own[kept])
    # not applied in eval mode
    pre.eval()
    out = pre(_batch([(points, labels)]), training=False)
    assert out['inputs']['voxels']['coors'].shape[0] == n_all


def test_other_voxel_types_still_use_mmdet3d() -> None:
    """'hard' voxelisation goes through mmdet3d/mmcv, unchanged."""
    pre = Det3DDataPreprocessor(
        voxel=True, voxel_type='hard',
    voxel_layer=dict(max_num_points=8, point_cloud_range=[-2, -2, -2, 2, 2, 2],
    voxel_size=[0.5, 0.5, 0.5], max_voxels=(100, 100)))
    points, labels = _scene(160, seed=6)
    out = pre(_batch([(points, labels)]), training=False)
    assert out['inputs']['voxels']['voxels'].dim() == 3  # (M, max_points, C): mmcv's layout
    assert 'num_points' in out['inputs']['voxels']


def test_function_needs_no_preprocessor() -> None:
    points, labels = _scene(80, seed=7)
    sample = Det3DDataSample()  # no labels at all (pre-training)
    out = voxelize_minkunet([points], [sample], voxel_size=[VOXEL] * 3)
    assert out['coors'].shape[0] == sample.point2voxel_map.max() + 1
    assert not hasattr(sample, 'gt_pts_seg') or 'voxel_semantic_mask' not in sample.gt_pts_seg


@pytest.mark.gpu
def test_cuda_inputs_keep_mmdet3d_path_and_agree_with_cpu() -> None:
    scenes = [_scene(400, seed=8)]
    cpu = _preprocessor()(_batch(scenes), training=False)
    pre = _preprocessor().cuda()
    gpu = pre(_batch(scenes), training=False)
    assert gpu['inputs']['voxels']['coors'].is_cuda
    assert torch.equal(gpu['inputs']['voxels']['coors'].cpu(), cpu['inputs']['voxels']['coors'])
    assert torch.equal(gpu['data_samples'][0].point2voxel_map.cpu(),
    cpu['data_samples'][0].point2voxel_map)
