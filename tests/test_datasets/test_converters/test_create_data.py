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


def test_s3dis_subcommand(create_data, fixtures_root, tmp_path, capsys):
    src = fixtures_root / 's3dis'
    pts = np.fromfile(src / 'points' / 'Area_1_office_2.bin', np.float32).reshape(-1, 6)
    sem = np.fromfile(src / 'semantic_mask' / 'Area_1_office_2.bin', np.int64)
    ins = np.fromfile(src / 'instance_mask' / 'Area_1_office_2.bin', np.int64)
    ins = np.unique(ins, return_inverse=True)[1].reshape(-1) + 1  # ids 1..K, no gaps
    # collect_indoor3d_data.py's output for one room per area.
    (tmp_path / 's3dis_data').mkdir()
    for area in range(1, 7):
        (tmp_path / 'Stanford3dDataset_v1.2_Aligned_Version' / f'Area_{area}' /
         'office_1').mkdir(parents=True)
        for name, arr in (('point', pts), ('sem_label', sem), ('ins_label', ins)):
            np.save(tmp_path / 's3dis_data' / f'Area_{area}_office_1_{name}.npy', arr)

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
