"""Point-to-pixel pairing: exact on real SUN RGB-D, kept exact through resize, flips and 3D
augmentations, occlusion test on synthetic RGB-D frames."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from concept_distill.datasets import color_agreement
from concept_distill.datasets.converters import create_synthetic_scannet
from concept_distill.visualization.pair_inspection import load_pair

REPO = REPO_ROOT
SUN = dict(ann_file='sunrgbd_000017_infos.pkl', data_prefix=dict(pts='', img=''))


@pytest.fixture(scope='module')
def syn_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('pairing')
    create_synthetic_scannet(root, num_scenes=1, seed=1, num_frames=3, points_per_scene=30000,
                             image_size=(120, 160))
    return root


def test_real_sunrgbd_point_colours_match_their_pixels(fixtures_root):
    root = str(fixtures_root / 'sunrgbd')
    pair = load_pair(root, SUN['ann_file'], 0, SUN['data_prefix'])
    assert len(pair['uv']) > 0.99 * 50000  # 99.8% of the depth points land in the image
    assert pair['color_error'] < 0.01  # the colours were read from exactly these pixels
    assert pair['shuffled_error'] > 0.25
    # SUN RGB-D's intrinsics count pixels from 1: ignoring that costs half a pixel of error.
    naive = load_pair(root, SUN['ann_file'], 0, SUN['data_prefix'], pixel_origin=0.0)
    assert 0.015 < naive['color_error'] < 0.05
    # Decoding the JPEG at 1/2 scale (training's fast path) keeps the pairing right.
    small = load_pair(root, SUN['ann_file'], 0, SUN['data_prefix'], decode_size=(224, 224))
    assert small['img'].shape[:2] == (265, 365)
    assert small['color_error'] < 0.05


def _sun_dataset(fixtures_root, flip: float, mode: str = 'squash'):
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/sunrgbd-paired.py'))
    ds = copy.deepcopy(cfg.train_dataloader.dataset)
    ds.update(data_root=str(fixtures_root / 'sunrgbd'), **SUN)
    # Keep the colours (columns 3:6) to compare them with the packed image.
    ds.pipeline[0].update(shift_height=False, use_dim=[0, 1, 2, 3, 4, 5])
    ds.pipeline[2].update(mode=mode)
    ds.pipeline[4].update(flip_ratio_bev_horizontal=flip)
    ds.pipeline[5].update(shift_height=False)
    return DATASETS.build(ds)


@pytest.mark.parametrize('flip,mode', [(0.0, 'squash'), (1.0, 'squash'), (1.0, 'shortest')])
def test_packed_sample_keeps_pixels_in_step(fixtures_root, flip, mode):
    np.random.seed(0)
    sample = _sun_dataset(fixtures_root, flip, mode)[0]
    pts, img = sample['inputs']['points'], sample['inputs']['img']
    ds = sample['data_samples']
    assert pts.shape == (8192, 6) and pts.dtype.is_floating_point
    assert img.shape == (3, 224, 224) and str(img.dtype) == 'torch.uint8'
    uv = ds.pixel_uv.numpy()
    assert uv.shape == (8192, 2)
    assert uv.min() >= -0.5 and uv.max() < 223.5
    assert ds.metainfo['flip'] is bool(flip) and ds.metainfo['frame_id']
    hwc = img.permute(1, 2, 0).numpy()
    # Points are rotated/scaled/flipped in 3D, the image is resized (and flipped): each
    # point must still sit on its own pixel.
    err = color_agreement(pts[:, 3:6].numpy(), hwc, uv)
    assert err < 0.05
    assert color_agreement(pts[:, 3:6].numpy(), hwc, uv[::-1]) > 0.2
    # Points are no longer where they were: the 3D augmentations ran after pairing.
    assert ds.metainfo['transformation_3d_flow'][-3:] == ['R', 'S', 'T']


def test_occlusion_test_removes_hidden_points(syn_root):
    errors, counts = [], []
    for tol in (0.1, 1e9):  # with and without the depth test
        pairs = [load_pair(str(syn_root), 'scannet_infos_train.pkl', i, occlusion_tol=tol)
                 for i in range(3)]
        errors.append(np.mean([p['color_error'] for p in pairs]))
        counts.append(sum(len(p['uv']) for p in pairs))
    assert counts[0] < 0.8 * counts[1]
    assert errors[0] < 0.6 * errors[1]
    assert errors[0] < 0.06


def test_scannet_paired_config_on_synthetic_root(syn_root):
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/scannet-paired.py'))
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=str(syn_root), max_frames_per_scene=2)
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 2
    sample = ds[1]
    assert sample['inputs']['points'].shape == (8192, 4)  # xyz + height, as VoteNet
    assert sample['inputs']['img'].shape == (3, 224, 224)
    meta = sample['data_samples'].metainfo
    assert meta['frame_id'].startswith('scene0000_00/') and meta['num_visible_points'] > 512
    # Points come out in the scene's aligned frame (z up, floor near 0).
    z = sample['inputs']['points'][:, 2].numpy()
    assert -0.3 < np.percentile(z, 1) < 0.3
    assert len(DATASETS.build(dict(ds_cfg, frame_stride=2, max_frames_per_scene=None))) == 2


def test_visualize_pairs_tool(fixtures_root, tmp_path, repo_root):
    out = tmp_path / 'pair.png'
    run = subprocess.run([sys.executable, 'tools/visualize_pairs.py', '--data-root',
                          str(fixtures_root / 'sunrgbd'), '--ann-file', SUN['ann_file'],
                          '--pts-prefix', '', '--out', str(out)], cwd=repo_root,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index('{'):])
    assert out.stat().st_size > 10000 and out.read_bytes()[:4] == b'\x89PNG'
    assert summary['color_error'] < 0.05 < 0.25 < summary['shuffled_error']
    assert summary['png'] == str(out)
