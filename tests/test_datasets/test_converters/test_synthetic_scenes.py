"""Synthetic ScanNet-format data: format, determinism, labels/boxes, mmdet3d pipelines, raw path."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from concept_distill.datasets.converters import create_synthetic_scannet
from concept_distill.datasets.converters.scannet_info import SCANNET_CLASSES, SCANNET_DET_NYU40
from concept_distill.datasets.converters.synthetic import (
    generate_scenes,
    write_label_map,
    write_raw_scene,
)
from concept_distill.visualization.pair_inspection import load_pair

MMDET3D_CONFIGS = Path(__import__('mmdet3d').__file__).parent / '.mim' / 'configs'
SMALL = dict(num_scenes=1, num_frames=4, points_per_scene=20000, image_size=(96, 128))


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('synthetic')
    summary = create_synthetic_scannet(out, seed=0, **SMALL)
    assert summary['train'] == summary['val'] == ['scene0000_00']
    return out


def _infos(root: Path, split: str = 'train') -> dict:
    with open(root / f'scannet_infos_{split}.pkl', 'rb') as f:
        return pickle.load(f)


def _arrays(root: Path, scene: str):
    pts = np.fromfile(root / 'points' / f'{scene}.bin', dtype=np.float32).reshape(-1, 6)
    inst = np.fromfile(root / 'instance_mask' / f'{scene}.bin', dtype=np.int64)
    sem = np.fromfile(root / 'semantic_mask' / f'{scene}.bin', dtype=np.int64)
    return pts, inst, sem


def test_small_root_has_mmdet3d_v2_format(tmp_path):
    calls = []
    summary = create_synthetic_scannet(tmp_path, seed=3, num_scenes=2, num_frames=4,
                                       points_per_scene=20000, val_scenes=1,
                                       progress=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]  # a progress report after every scene
    assert summary['num_frames'] == 8 and summary['num_points'] == 40000
    infos = _infos(tmp_path)
    assert infos['metainfo']['categories'] == {c: i for i, c in enumerate(SCANNET_CLASSES)}
    assert infos['metainfo']['dataset'] == 'scannet'
    (entry,) = infos['data_list']
    assert entry['lidar_points'] == dict(num_pts_feats=6, lidar_path='scene0000_00.bin')
    assert entry['pts_semantic_mask_path'] == entry['pts_instance_mask_path'] == 'scene0000_00.bin'
    align = np.asarray(entry['axis_align_matrix'])
    assert align.shape == (4, 4) and not np.allclose(align, np.eye(4))  # ScanNet-like
    assert align[2].tolist() == [0.0, 0.0, 1.0, align[2, 3]]  # yaw only, as GlobalAlignment asks
    assert len(entry['instances']) >= 5
    for inst in entry['instances']:
        assert len(inst['bbox_3d']) == 6 and 0 <= inst['bbox_label_3d'] < 18
        assert type(inst['bbox_label_3d']) is int
    assert len(entry['frames']) == 4
    for fr in entry['frames']:
        assert fr['frame_id'].startswith('scene0000_00/')
        for key in ('img_path', 'depth_path'):
            assert (tmp_path / fr[key]).is_file()
        assert np.isfinite(fr['cam2global']).all()
        assert np.asarray(fr['cam2img']).shape == (4, 4)
    for split in ('train', 'val'):
        assert (tmp_path / 'seg_info' / f'{split}_resampled_scene_idxs.npy').is_file()
    pts, inst, sem = _arrays(tmp_path, 'scene0000_00')
    assert len(pts) == len(inst) == len(sem) == 20000
    assert pts[:, 3:].min() >= 0 and 1 < pts[:, 3:].max() <= 255  # colours 0-255


def test_deterministic_in_seed(tmp_path):
    a = create_synthetic_scannet(tmp_path / 'a', seed=7, **SMALL)
    b = create_synthetic_scannet(tmp_path / 'b', seed=7, **SMALL)
    create_synthetic_scannet(tmp_path / 'c', seed=8, **SMALL)
    assert a['class_counts'] == b['class_counts']
    pa, pb, pc = (np.fromfile(tmp_path / x / 'points' / 'scene0000_00.bin', np.float32)
                  for x in 'abc')
    assert np.array_equal(pa, pb) and not np.array_equal(pa, pc)
    ia, ib = _infos(tmp_path / 'a'), _infos(tmp_path / 'b')
    assert ia['data_list'][0]['instances'] == ib['data_list'][0]['instances']
    img = 'posed_images/scene0000_00/00002.jpg'
    assert (tmp_path / 'a' / img).read_bytes() == (tmp_path / 'b' / img).read_bytes()


def test_boxes_tight_and_labels_as_scannet(root):
    entry = _infos(root)['data_list'][0]
    pts, inst, sem = _arrays(root, 'scene0000_00')
    align = np.asarray(entry['axis_align_matrix'])
    xyz = pts[:, :3].astype(np.float64) @ align[:3, :3].T + align[:3, 3]
    # Semantic ids are NYU40 raw ids, as ScanNet stores them: wall, floor and the 18 classes.
    assert set(np.unique(sem)) <= {1, 2, *SCANNET_DET_NYU40}
    assert {1, 2} <= set(np.unique(sem))
    boxes = {}
    for i in np.unique(inst):
        nyu = np.unique(sem[inst == i])
        assert len(nyu) == 1  # one class per instance
        if nyu[0] in SCANNET_DET_NYU40:
            lo, hi = xyz[inst == i].min(0), xyz[inst == i].max(0)
            boxes[i] = (np.concatenate([(lo + hi) / 2, hi - lo]),
                        SCANNET_DET_NYU40.index(nyu[0]))
    got = sorted((tuple(np.round(x['bbox_3d'], 5)), x['bbox_label_3d'])
                 for x in entry['instances'])
    want = sorted((tuple(np.round(b, 5)), lab) for b, lab in boxes.values())
    assert got == want  # every furniture instance, tight box, right label, nothing else
    # The rooms are upright after alignment: the floor is at z ~ 0 and walls rise from it.
    assert abs(np.percentile(xyz[sem == 2, 2], 50)) < 0.01
    # Class-specific appearance: chairs are red, tables are wood-coloured.
    chairs = pts[sem == 5, 3:].mean(0)
    assert chairs[0] > 1.5 * chairs[1]


def test_every_class_appears_across_scenes():
    seen = set()
    for scene in generate_scenes(6, 0, 0, 3000, (32, 32)):
        seen |= {o.name for o in scene.objects if o.name}
    assert seen == set(SCANNET_CLASSES)


def _build(cfg_path: Path, root: Path, loader: str = 'train_dataloader', **changes):
    cfg = Config.fromfile(str(cfg_path))
    ds = cfg[loader]['dataset']
    ds = ds.get('dataset', ds)  # RepeatDataset
    ds.update(data_root=str(root) + '/', **changes)
    return DATASETS.build(ds)


def test_mmdet3d_scannet_detection_and_segmentation_pipelines(root):
    det = _build(MMDET3D_CONFIGS / '_base_/datasets/scannet-3d.py', root)
    sample = det[0]
    n_inst = len(_infos(root)['data_list'][0]['instances'])
    gt = sample['data_samples'].gt_instances_3d
    assert len(gt.labels_3d) == n_inst and sample['inputs']['points'].shape == (40000, 4)
    sem = sample['data_samples'].gt_pts_seg.pts_semantic_mask
    assert int(sem.max()) <= 18 and int(sem.min()) >= 0 and (sem < 18).any()

    seg = _build(MMDET3D_CONFIGS / '_base_/datasets/scannet-seg.py', root,
                 scene_idxs=str(root / 'seg_info' / 'train_resampled_scene_idxs.npy'))
    s = seg[0]
    assert s['inputs']['points'].shape == (8192, 6)
    labels = s['data_samples'].gt_pts_seg.pts_semantic_mask
    assert {0, 1} <= set(np.unique(labels.numpy()).tolist())  # wall and floor mapped to 0, 1
    assert int(labels.max()) <= 20


def test_raw_layout_through_scannet_subcommand(tmp_path, capsys, import_tool):
    create_data = import_tool('create_data')
    raw = tmp_path / 'raw'
    (scene,) = generate_scenes(1, 5, 5, 6000, (96, 128))
    write_raw_scene(raw / 'scans', scene, bad_pose_frames=(2,))
    write_label_map(raw / 'scannetv2-labels.combined.tsv')
    (raw / 'meta_data').mkdir()
    (raw / 'meta_data' / 'scannetv2_train.txt').write_text(f'{scene.name}\n')
    (raw / 'meta_data' / 'scannetv2_val.txt').write_text(f'{scene.name}\n')

    summary = create_data.main(['scannet', '--root-path', str(raw), '--frame-stride', '1'])
    assert summary['skipped_non_finite_pose'] == 1
    assert summary['frames_read'] == 5 and summary['frames_kept'] == 4
    # One bar: the scene export (1 scene), then mmdet3d's converter (train + val listings).
    err = capsys.readouterr().err
    assert 'scannet scenes' in err and '2/2' in err and '-' not in err.split('2/2')[-1]

    infos = _infos(raw)
    (entry,) = infos['data_list']
    assert [f['frame_id'] for f in entry['frames']] == [
        f'{scene.name}/{i:05d}' for i in (0, 1, 3, 4)]
    np.testing.assert_allclose(entry['axis_align_matrix'], scene.axis_align_matrix, atol=1e-8)
    boxes, labels = scene.boxes()
    got = np.asarray([i['bbox_3d'] for i in entry['instances']])
    np.testing.assert_allclose(got, boxes, atol=1e-4)
    assert [i['bbox_label_3d'] for i in entry['instances']] == labels.tolist()
    pts, inst, sem = _arrays(raw, scene.name)
    np.testing.assert_allclose(pts[:, :3], scene.points[:, :3], atol=1e-6)
    np.testing.assert_allclose(pts[:, 3:], scene.points[:, 3:], atol=0.51)  # uchar in .ply
    assert np.array_equal(inst, scene.instance) and np.array_equal(sem, scene.semantic)
    # Depth frames are half-size with their own intrinsics; pairing stays exact.
    fr = entry['frames'][0]
    assert np.asarray(fr['depth2img'])[0, 0] == pytest.approx(fr['cam2img'][0][0] / 2)
    pair = load_pair(str(raw), 'scannet_infos_train.pkl', 0)
    assert len(pair['uv']) > 200
    assert pair['color_error'] < 0.08
    assert pair['color_error'] < 0.5 * pair['shuffled_error']
