"""tools/create_data.py sunrgbd / s3dis: mmdet3d's converters run on inputs rebuilt from the
real fixtures, and the SUN RGB-D output still pairs exactly."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import REPO_ROOT

from concept_distill.visualization.pair_inspection import load_pair

FLIP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # mmdet3d: depth -> camera axes


@pytest.fixture(scope='module')
def create_data(import_tool):
    return import_tool('create_data')


def _rq(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a = k @ r with k upper triangular (positive diagonal) and r orthonormal."""
    p = np.eye(3)[::-1]
    q, u = np.linalg.qr((p @ a).T)
    k, r = p @ u.T @ p, p @ q.T
    d = np.diag(np.sign(np.diag(k)))
    return k @ d, d @ r


def test_sunrgbd_subcommand(fixtures_root, tmp_path):
    src = fixtures_root / 'sunrgbd'
    info = pickle.loads((src / 'sunrgbd_000017_infos.pkl').read_bytes())['data_list'][0]
    # Rebuild the MATLAB toolbox's output for frame 17: depth .mat, image, calib, labels.
    trainval = tmp_path / 'sunrgbd_trainval'
    for sub in ('image', 'depth', 'calib', 'label'):
        (trainval / sub).mkdir(parents=True)
    shutil.copy(src / '000017.jpg', trainval / 'image' / '000017.jpg')
    points = np.fromfile(src / '000017.bin', dtype=np.float32).reshape(-1, 6)
    scipy.io.savemat(trainval / 'depth' / '000017.mat', dict(instance=points))  # single
    k, r = _rq(np.asarray(info['images']['CAM0']['depth2img']))  # depth2img = K @ FLIP @ Rt^T
    rt = (FLIP.T @ r).T
    (trainval / 'calib' / '000017.txt').write_text(
        ' '.join(f'{v:.10f}' for v in rt.reshape(-1, order='F')) + '\n'
        + ' '.join(f'{v:.10f}' for v in k.reshape(-1, order='F')) + '\n')
    classes = ('bed', 'table', 'sofa', 'chair', 'toilet', 'desk', 'dresser', 'night_stand',
               'bookshelf', 'bathtub')
    lines = []
    for inst in info['instances']:
        (x0, y0, x1, y1), (cx, cy, cz, dx, dy, dz, yaw) = inst['bbox'], inst['bbox_3d']
        vals = [x0, y0, x1 - x0, y1 - y0, cx, cy, cz, dy / 2, dx / 2, dz / 2, np.cos(yaw),
                np.sin(yaw)]
        lines.append(' '.join([classes[inst['bbox_label_3d']]] + [f'{v:.8f}' for v in vals]))
    (trainval / 'label' / '000017.txt').write_text('\n'.join(lines) + '\n')
    for split in ('train', 'val'):
        (trainval / f'{split}_data_idx.txt').write_text('17\n')

    # As a user runs it: stdout is the JSON summary alone (mmdet3d's own progress bar would
    # land there), the progress bar is on stderr.
    run = subprocess.run([sys.executable, 'tools/create_data.py', 'sunrgbd', '--root-path',
                          str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    summary = json.loads(run.stdout)
    assert 'sunrgbd samples' in run.stderr and '2/2' in run.stderr  # train and val samples
    assert sorted(Path(p).name for p in summary['info_files']) == [
        'sunrgbd_infos_train.pkl', 'sunrgbd_infos_val.pkl']
    out = pickle.loads((tmp_path / 'sunrgbd_infos_train.pkl').read_bytes())
    assert out['metainfo']['dataset'] == 'sunrgbd'
    (entry,) = out['data_list']
    cam = entry['images']['CAM0']
    assert cam['img_path'] == '000017.jpg' and (cam['height'], cam['width']) == (530, 730)
    np.testing.assert_allclose(cam['depth2img'], info['images']['CAM0']['depth2img'],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose([i['bbox_3d'] for i in entry['instances']],
                               [i['bbox_3d'] for i in info['instances']], atol=1e-5)
    assert [i['bbox_label_3d'] for i in entry['instances']] == [
        i['bbox_label_3d'] for i in info['instances']]
    # mmdet3d's output pairs as exactly as the original sample does.
    pair = load_pair(str(tmp_path), 'sunrgbd_infos_train.pkl', 0,
                     dict(pts='points', img='sunrgbd_trainval/image'))
    assert len(pair['uv']) > 49000 and pair['color_error'] < 0.01


def _s3dis_input(src: Path, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """collect_indoor3d_data.py's output for one room per area, from the real fixture room."""
    pts = np.fromfile(src / 'points' / 'Area_1_office_2.bin', np.float32).reshape(-1, 6)
    sem = np.fromfile(src / 'semantic_mask' / 'Area_1_office_2.bin', np.int64)
    ins = np.fromfile(src / 'instance_mask' / 'Area_1_office_2.bin', np.int64)
    ins = np.unique(ins, return_inverse=True)[1].reshape(-1) + 1  # ids 1..K, no gaps
    (root / 's3dis_data').mkdir(parents=True)
    for area in range(1, 7):
        (root / 'Stanford3dDataset_v1.2_Aligned_Version' / f'Area_{area}' /
         'office_1').mkdir(parents=True)
        for name, arr in (('point', pts), ('sem_label', sem), ('ins_label', ins)):
            np.save(root / 's3dis_data' / f'Area_{area}_office_1_{name}.npy', arr)
    return pts, sem, ins


def test_s3dis_subcommand(create_data, fixtures_root, tmp_path, capsys):
    pts, sem, ins = _s3dis_input(fixtures_root / 's3dis', tmp_path)

    summary = create_data.main(['s3dis', '--root-path', str(tmp_path)])
    assert '6/6' in capsys.readouterr().err  # progress: one room per area
    assert len(summary['info_files']) == 6
    out = pickle.loads((tmp_path / 's3dis_infos_Area_5.pkl').read_bytes())
    assert out['metainfo']['dataset'] == 's3dis'
    (entry,) = out['data_list']
    assert entry['lidar_points']['lidar_path'] == 'Area_5_office_1.bin'
    stored = np.fromfile(tmp_path / 'points' / 'Area_5_office_1.bin', np.float32)
    np.testing.assert_array_equal(stored.reshape(-1, 6), pts)
    furniture = {i for i in np.unique(ins) if sem[ins == i][0] in (7, 8, 9, 10, 11)}
    assert len(entry['instances']) == len(furniture) > 0
    assert (tmp_path / 'seg_info' / 'Area_5_label_weight.npy').is_file()


# ---------------------------------------------------------------- reruns never mix datasets
SYNTH = ['--num-scenes', '1', '--seed', '3', '--num-frames', '2', '--points-per-scene', '4000',
         '--image-size', '48', '64']


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


def test_synthetic_into_a_non_empty_folder_needs_force(create_data, synthetic_root, tmp_path):
    """Issue 18.2: an older 2-scene root is neither overwritten in part nor mixed in.

    (The refusal is an `OutputExistsError`, a `FileExistsError`.)"""
    old = synthetic_root(copy_to=tmp_path / 'data', num_scenes=2, seed=0, num_frames=2,
                         points_per_scene=4000, image_size=(48, 64))
    before = _tree(old)
    args = ['synthetic', '--root-path', str(old), '--out-dir', str(old), *SYNTH]
    with pytest.raises(FileExistsError, match=rf'{old} is not empty: .*--force'):
        create_data.main(args)
    assert _tree(old) == before
    # With --force the folder holds the new dataset alone.
    summary = create_data.main(args + ['--force'])
    assert summary['scenes'] == ['scene0000_00']
    assert not list(old.rglob('scene0001_00*'))
    after = _tree(old)
    # The same command again finds its own complete result and changes nothing.
    again = create_data.main(args)
    assert again['up_to_date'] and again['scenes'] == ['scene0000_00']
    assert _tree(old) == after
    # Other parameters are another dataset: refused, naming what differs.
    with pytest.raises(FileExistsError, match='seed differ'):
        create_data.main(args[:-len(SYNTH)] + [*SYNTH[:2], '--seed', '4', *SYNTH[4:]])


def test_indoor_converters_refuse_foreign_outputs(create_data, fixtures_root, tmp_path):
    """Issue 18.2: `s3dis` (as `sunrgbd`, `scannet`) never writes into outputs another tool
    made; --force deletes them first, so nothing stale is left; its own result reruns."""
    root = tmp_path / 's3dis'
    _s3dis_input(fixtures_root / 's3dis', root)
    (root / 'points').mkdir()
    stale = root / 'points' / 'Area_7_hallway_1.bin'  # e.g. mmdet3d's own run of another copy
    stale.write_bytes(b'\0' * 24)
    before = _tree(root)
    with pytest.raises(FileExistsError, match=rf'{root} already holds {root / "points"}, which '
                       r'no `create_data.py s3dis` run wrote here .*--force'):
        create_data.main(['s3dis', '--root-path', str(root)])
    assert _tree(root) == before  # refused before anything was written
    summary = create_data.main(['s3dis', '--root-path', str(root), '--force'])
    assert len(summary['info_files']) == 6 and not stale.exists()
    assert (root / 'points' / 'Area_5_office_1.bin').is_file()
    record = json.loads((root / '.create_data_s3dis.json').read_text())
    assert record['complete'] and record['summary']['info_files'] == summary['info_files']
    # Its own complete result: converted again without --force, to the same files.
    outputs = {k: v for k, v in _tree(root).items() if not k.startswith('.create_data')}
    again = create_data.main(['s3dis', '--root-path', str(root)])
    assert again['info_files'] == summary['info_files']
    assert {k: v for k, v in _tree(root).items() if not k.startswith('.create_data')} == outputs
    # No input at all: an error before anything is touched.
    with pytest.raises(FileNotFoundError, match='no sunrgbd samples found .*nothing was changed'):
        create_data.main(['sunrgbd', '--root-path', str(root), '--force'])
    assert (root / 'points' / 'Area_5_office_1.bin').is_file()


def _raw_root(tmp_path: Path) -> tuple[Path, str]:
    """A raw ScanNet root of one scene with 6 frames (frame 2's pose is -inf)."""
    from concept_distill.datasets.converters.synthetic import (
        generate_scenes,
        write_label_map,
        write_raw_scene,
    )

    raw = tmp_path / 'raw'
    (scene,) = generate_scenes(1, 5, 6, 4000, (48, 64))
    write_raw_scene(raw / 'scans', scene, bad_pose_frames=(2,))
    write_label_map(raw / 'scannetv2-labels.combined.tsv')
    (raw / 'meta_data').mkdir()
    (raw / 'meta_data' / 'scannetv2_train.txt').write_text(f'{scene.name}\n')
    return raw, scene.name


def _frame_ids(raw: Path) -> list[str]:
    (entry,) = pickle.loads((raw / 'scannet_infos_train.pkl').read_bytes())['data_list']
    return [f['frame_id'].split('/')[1] for f in entry['frames']]


def test_scannet_rerun_is_idempotent(create_data, tmp_path, monkeypatch):
    """Issue 18.3: a rerun does not stride the export again; a killed export is redone."""
    from concept_distill.datasets.converters import scannet_frames
    from concept_distill.datasets.converters.scannet_converter import convert_scannet

    raw, name = _raw_root(tmp_path)
    # A kill during the export (here: at the second written frame) ...
    write = scannet_frames.write_posed_frame
    calls = []

    def killed(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write(*args, **kwargs)

    monkeypatch.setattr(scannet_frames, 'write_posed_frame', killed)
    with pytest.raises(KeyboardInterrupt):
        convert_scannet(raw, frame_stride=2)
    monkeypatch.undo()
    record = raw / '.create_data_scannet.json'
    assert json.loads(record.read_text())['complete'] is False  # the marker comes last
    # ... is not taken as a complete export: the rerun exports the scene again.
    first = convert_scannet(raw, frame_stride=2)
    assert first['frames_read'] == 3 and first['frames_kept'] == 2  # frames 0, 2 (-inf), 4
    assert first['scenes_reused'] == 0
    assert _frame_ids(raw) == ['00000', '00004']
    assert json.loads(record.read_text())['complete'] is True
    # The same command again reuses the export as it is.
    again = create_data.main(['scannet', '--root-path', str(raw), '--frame-stride', '2'])
    assert again['frames_kept'] == 2 and again['frames_read'] == 3
    assert again['scenes_reused'] == 1
    assert _frame_ids(raw) == ['00000', '00004']
    # Another stride is refused (naming the folder and the options) unless --force.
    folder = raw / 'posed_images' / name
    with pytest.raises(FileExistsError, match=rf'{folder} was exported with other options: '
                       r'frame_stride=2 \(now 1\).*--force'):
        convert_scannet(raw, frame_stride=1)
    forced = create_data.main(['scannet', '--root-path', str(raw), '--frame-stride', '1',
                               '--force'])
    assert forced['frames_kept'] == 5 and forced['scenes_reused'] == 0
    assert _frame_ids(raw) == ['00000', '00001', '00003', '00004', '00005']
    assert sorted(p.stem for p in folder.glob('*.jpg')) == _frame_ids(raw)


def test_bad_pose_file_is_named(tmp_path):
    """Issue 18.7: a pose file holding text is an error naming the file, not a raw ValueError."""
    from concept_distill.datasets.converters.scannet_frames import scene_frames
    from concept_distill.datasets.converters.scannet_info import write_posed_frame

    scene = 'scene0000_00'
    for i in range(2):  # a folder exported by another tool: intrinsic.txt, no export.json
        write_posed_frame(tmp_path, scene, i, np.zeros((8, 8, 3), np.uint8), None, np.eye(4))
    folder = tmp_path / 'posed_images' / scene
    np.savetxt(folder / 'intrinsic.txt', np.eye(4))
    assert len(scene_frames(tmp_path, scene, tmp_path / 'none.sens', frame_stride=1)) == 2
    (folder / '00001.txt').write_text('not a pose\n')
    with pytest.raises(ValueError, match=rf'{folder / "00001.txt"} is not a 4x4 matrix of '
                       r'numbers \(not numbers'):
        scene_frames(tmp_path, scene, tmp_path / 'none.sens', frame_stride=1)


def test_scannet_refuses_foreign_outputs(tmp_path):
    """Issue 18.2: a ScanNet root already holding mmdet3d's outputs (no record of ours) is
    refused before any scene is exported; --force replaces them all."""
    from concept_distill.datasets.converters.scannet_converter import convert_scannet

    raw, name = _raw_root(tmp_path)
    (raw / 'points').mkdir()
    stale = raw / 'points' / 'scene0707_00.bin'
    stale.write_bytes(b'\0' * 24)
    with pytest.raises(FileExistsError, match=rf'already holds {raw / "points"}.*--force'):
        convert_scannet(raw, frame_stride=2)
    assert not (raw / 'posed_images').exists() and not (raw / 'scannet_instance_data').exists()
    summary = convert_scannet(raw, frame_stride=2, force=True)
    assert summary['frames_kept'] == 2 and not stale.exists()
    assert sorted(p.name for p in (raw / 'points').iterdir()) == [f'{name}.bin']


def test_bad_axis_alignment_is_named(tmp_path):
    """Issue 18.7: a scene meta file whose axisAlignment holds text names the file."""
    from concept_distill.datasets.converters.scannet_raw import read_axis_alignment

    meta = tmp_path / 'scene0000_00.txt'
    meta.write_text('axisAlignment = ' + ' '.join(['1'] * 15) + ' one\n')
    with pytest.raises(ValueError, match=rf'{meta}: axisAlignment is not 16 numbers'):
        read_axis_alignment(meta)
    meta.write_text('axisAlignment = ' + ' '.join(str(float(v)) for v in np.eye(4).ravel()))
    np.testing.assert_array_equal(read_axis_alignment(meta), np.eye(4))
