"""Object readers on small files written here from the formats' public descriptions."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from mmdet3d.registry import DATASETS

from concept_distill.datasets.object_datasets import (
    MODELNET40_CLASSES,
    SCANOBJECTNN_CLASSES,
    SHAPENET_PART_SEG_CLASSES,
    ObjectDataError,
)

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- ModelNet40 text
def _modelnet_text(root: Path) -> Path:
    """modelnet40_normal_resampled: 2 airplanes + 1 night_stand train, 1 vase test."""
    root.mkdir(parents=True, exist_ok=True)
    (root / 'modelnet40_shape_names.txt').write_text('\n'.join(MODELNET40_CLASSES) + '\n')
    (root / 'modelnet40_train.txt').write_text('airplane_0001\nairplane_0002\nnight_stand_0007\n')
    (root / 'modelnet40_test.txt').write_text('vase_0576\n')
    for shape in ('airplane_0001', 'airplane_0002', 'night_stand_0007', 'vase_0576'):
        cls = shape.rsplit('_', 1)[0]
        (root / cls).mkdir(exist_ok=True)
        rows = RNG.uniform(-1, 1, (50, 6))
        text = '\n'.join(','.join(f'{v:.6f}' for v in r) for r in rows) + '\n'
        (root / cls / f'{shape}.txt').write_text(text)
    return root


def test_modelnet40_text(tmp_path):
    root = _modelnet_text(tmp_path / 'modelnet40_normal_resampled')
    ds = DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root), split='train'))
    assert len(ds) == 3 and ds.metainfo['classes'] == MODELNET40_CLASSES
    assert [ds[i]['gt_label'] for i in range(3)] == [0, 0, MODELNET40_CLASSES.index(
        'night_stand')]  # the class of "night_stand_0007" keeps its underscore
    item = ds[2]
    expected = np.loadtxt(root / 'night_stand' / 'night_stand_0007.txt', delimiter=',')
    np.testing.assert_allclose(item['points'], expected[:, :3], atol=1e-6)
    with_normals = DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root),
                                       split='test', use_normals=True))
    assert with_normals[0]['points'].shape == (50, 6)
    assert with_normals[0]['gt_label'] == MODELNET40_CLASSES.index('vase')
    np.testing.assert_array_equal(ds.labels(), [0, 0, 23])


def test_modelnet40_text_bad_files_are_named(tmp_path):
    root = _modelnet_text(tmp_path / 'mn')
    (root / 'airplane' / 'airplane_0002.txt').unlink()
    (root / 'airplane' / 'airplane_0001.txt').write_text('1,2,3,4,5\n6,7,8,9\n')
    ds = DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root), split='train'))
    with pytest.raises(ObjectDataError, match=r'airplane_0001\.txt: expected rows of 6 values'):
        ds[0]
    with pytest.raises(ObjectDataError, match=r'ModelNet40 point file not found: .*'
                                              r'airplane_0002\.txt'):
        ds[1]
    (root / 'modelnet40_test.txt').write_text('unicorn_0001\n')
    with pytest.raises(ObjectDataError, match=r"modelnet40_test\.txt:1: shape 'unicorn_0001' "
                                              r"has class 'unicorn'"):
        DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root), split='test'))
    (root / 'modelnet40_shape_names.txt').unlink()
    with pytest.raises(ObjectDataError, match=r'shape-name list not found: .*'
                                              r'modelnet40_shape_names\.txt'):
        DATASETS.build(dict(type='ModelNet40Dataset', data_root=str(root)))


# --------------------------------------------------------------------------- ModelNet40 h5
def _modelnet_h5(root: Path) -> tuple[Path, np.ndarray]:
    """modelnet40_ply_hdf5_2048: two train files (3 + 2 shapes), one test file."""
    root.mkdir(parents=True)
    (root / 'shape_names.txt').write_text('\n'.join(MODELNET40_CLASSES) + '\n')
    data = RNG.uniform(-1, 1, (5, 2048, 3)).astype(np.float32)
    labels = np.array([[3], [39], [0], [7], [12]], dtype=np.uint8)
    for k, sl in enumerate((slice(0, 3), slice(3, 5))):
        with h5py.File(root / f'ply_data_train{k}.h5', 'w') as f:
            f['data'], f['label'] = data[sl], labels[sl]
            f['normal'] = np.ones_like(data[sl])
    with h5py.File(root / 'ply_data_test0.h5', 'w') as f:
        f['data'], f['label'] = data[:1], labels[:1]
    (root / 'train_files.txt').write_text('data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n'
                                          'data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n')
    (root / 'test_files.txt').write_text('data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n')
    return root, data


def test_modelnet40_h5(tmp_path):
    root, data = _modelnet_h5(tmp_path / 'modelnet40_ply_hdf5_2048')
    ds = DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root), split='train'))
    assert len(ds) == 5 and ds.labels().tolist() == [3, 39, 0, 7, 12]
    np.testing.assert_array_equal(ds[4]['points'], data[4])
    assert ds[4]['shape_id'] == 'ply_data_train1.h5:1'
    normals = DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root),
                                  use_normals=True))
    assert normals[0]['points'].shape == (2048, 6)
    with pytest.raises(ObjectDataError, match=r"ply_data_test0\.h5: use_normals=True but the "
                                              r"file has no 'normal'"):
        DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root), split='test',
                            use_normals=True))


def test_modelnet40_h5_bad_files_are_named(tmp_path):
    root, _ = _modelnet_h5(tmp_path / 'h5')
    (root / 'ply_data_train1.h5').write_bytes(b'not an hdf5 file')
    with pytest.raises(ObjectDataError, match=r'ply_data_train1\.h5: cannot read'):
        DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root)))
    (root / 'ply_data_train1.h5').unlink()
    with pytest.raises(ObjectDataError, match=r'file not found: .*ply_data_train1\.h5'):
        DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root)))
    with h5py.File(root / 'ply_data_test0.h5', 'w') as f:
        f['data'] = np.zeros((1, 2048, 3), np.float32)
    with pytest.raises(ObjectDataError, match=r"ply_data_test0\.h5: ModelNet40 h5 file lacks "
                                              r"datasets \['label'\]"):
        DATASETS.build(dict(type='ModelNet40H5Dataset', data_root=str(root), split='test'))


# --------------------------------------------------------------------------- ScanObjectNN
def _scanobjectnn(root: Path) -> dict:
    """h5_files with the OBJ_BG / OBJ_ONLY / PB_T50_RS train and test files."""
    made = {}
    for folder, stem in (('main_split', 'objectdataset'), ('main_split_nobg', 'objectdataset'),
                         ('main_split', 'objectdataset_augmentedrot_scale75')):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for split, n in (('training', 4), ('test', 2)):
            data = RNG.uniform(-1, 1, (n, 2048, 3)).astype(np.float32)
            label = RNG.integers(0, 15, n)
            mask = RNG.integers(0, 5, (n, 2048)).astype(np.int32)
            if folder == 'main_split':
                mask[:, :500] = -1  # background
            with h5py.File(root / folder / f'{split}_{stem}.h5', 'w') as f:
                f['data'], f['label'], f['mask'] = data, label, mask
            made[(folder, stem, split)] = (data, label, mask)
    return made


@pytest.mark.parametrize('variant,folder,stem', [
    ('OBJ_BG', 'main_split', 'objectdataset'),
    ('OBJ_ONLY', 'main_split_nobg', 'objectdataset'),
    ('PB_T50_RS', 'main_split', 'objectdataset_augmentedrot_scale75')])
def test_scanobjectnn_variants_by_file_name(tmp_path, variant, folder, stem):
    made = _scanobjectnn(tmp_path / 'h5_files')
    for split, name in (('train', 'training'), ('test', 'test')):
        ds = DATASETS.build(dict(type='ScanObjectNNDataset', data_root=str(tmp_path / 'h5_files'),
                                 variant=variant, split=split))
        data, label, mask = made[(folder, stem, name)]
        assert ds.metainfo['classes'] == SCANOBJECTNN_CLASSES
        assert ds.labels().tolist() == label.tolist()
        np.testing.assert_array_equal(ds[1]['points'], data[1])
        np.testing.assert_array_equal(ds[1]['object_mask'], mask[1] != -1)


def test_scanobjectnn_bad_input(tmp_path):
    root = tmp_path / 'h5_files'
    _scanobjectnn(root)
    with pytest.raises(ValueError, match='unknown ScanObjectNN variant'):
        DATASETS.build(dict(type='ScanObjectNNDataset', data_root=str(root), variant='PB_T25'))
    (root / 'main_split_nobg' / 'test_objectdataset.h5').unlink()
    with pytest.raises(ObjectDataError, match=r'not found: .*main_split_nobg/'
                                              r'test_objectdataset\.h5'):
        DATASETS.build(dict(type='ScanObjectNNDataset', data_root=str(root), variant='OBJ_ONLY',
                            split='test'))
    with h5py.File(root / 'main_split' / 'test_objectdataset.h5', 'w') as f:
        f['data'], f['label'] = np.zeros((1, 8, 3), np.float32), np.array([20])
        f['mask'] = np.zeros((1, 8), np.int32)
    with pytest.raises(ObjectDataError, match=r'test_objectdataset\.h5: label 20 outside the '
                                              r'15 classes'):
        DATASETS.build(dict(type='ScanObjectNNDataset', data_root=str(root), variant='OBJ_BG',
                            split='test'))


# --------------------------------------------------------------------------- ShapeNetPart
def _shapenet_part(root: Path) -> dict:
    """The normal-resampled benchmark with the 16 categories listed, shapes of 3 of them."""
    (root / 'train_test_split').mkdir(parents=True)
    cats = {'Airplane': '02691156', 'Bag': '02773838', 'Cap': '02954340', 'Car': '02958343',
            'Chair': '03001627', 'Earphone': '03261776', 'Guitar': '03467517',
            'Knife': '03624134', 'Lamp': '03636649', 'Laptop': '03642806',
            'Motorbike': '03790512', 'Mug': '03797390', 'Pistol': '03948459',
            'Rocket': '04099429', 'Skateboard': '04225987', 'Table': '04379243'}
    (root / 'synsetoffset2category.txt').write_text(
        ''.join(f'{c}\t{s}\n' for c, s in cats.items()))
    shapes = {'train': [('Chair', '1a6f615e8b1b5ae4dbbc9440457e303e', [12, 13, 14, 15]),
                        ('Airplane', '1a04e3eab45ca15dd86060f189eb133', [0, 1, 2, 3])],
              'val': [('Table', '1a00aa6b75362cc5b324368d54a7416f', [47, 48])],
              'test': [('Mug', '1a1c0a8d4bad82169f0594e65f756cf5', [36, 37])]}
    made = {}
    for split, items in shapes.items():
        entries = []
        for cat, shape, parts in items:
            (root / cats[cat]).mkdir(exist_ok=True)
            n = int(RNG.integers(2500, 2900))
            xyz = RNG.uniform(-1, 1, (n, 6))
            part = RNG.choice(parts, n).astype(float)
            rows = np.concatenate([xyz, part[:, None]], axis=1)
            (root / cats[cat] / f'{shape}.txt').write_text(
                '\n'.join(' '.join(f'{v:.6f}' for v in r) for r in rows) + '\n')
            entries.append(f'shape_data/{cats[cat]}/{shape}')
            made[shape] = rows
        (root / 'train_test_split' / f'shuffled_{split}_file_list.json').write_text(
            json.dumps(entries))
    return made


def test_shapenet_part(tmp_path):
    root = tmp_path / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    made = _shapenet_part(root)
    ds = DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='trainval'))
    assert len(ds) == 3 and ds.metainfo['num_parts'] == 50
    assert ds.metainfo['classes'] == tuple(SHAPENET_PART_SEG_CLASSES)
    assert ds.metainfo['seg_classes']['Table'] == [47, 48, 49]
    chair = ds[0]
    rows = made['1a6f615e8b1b5ae4dbbc9440457e303e']
    np.testing.assert_allclose(chair['points'], rows[:, :3], atol=1e-6)
    np.testing.assert_array_equal(chair['part_labels'], rows[:, 6].astype(int))
    assert chair['category'] == 4 and chair['part_ids'] == [12, 13, 14, 15]
    assert ds[2]['category_name'] == 'Table'  # the val shape comes after the train ones
    test = DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='test',
                               use_normals=True))
    assert len(test) == 1 and test[0]['points'].shape[1] == 6 and test[0]['category'] == 11
    only = DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='train',
                               class_choice=['Airplane']))
    assert [d['category_name'] for d in only.data_list] == ['Airplane']


def test_shapenet_part_bad_input(tmp_path):
    root = tmp_path / 'sp'
    _shapenet_part(root)
    chair = root / '03001627' / '1a6f615e8b1b5ae4dbbc9440457e303e.txt'
    rows = np.loadtxt(chair)
    rows[5, 6] = 47  # a Table part on a chair
    np.savetxt(chair, rows, fmt='%.6f')
    ds = DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='train'))
    with pytest.raises(ObjectDataError, match=r'1a6f615e8b1b5ae4dbbc9440457e303e\.txt: part '
                                              r'ids \[47\] are not parts of Chair'):
        ds[0]
    (root / '02691156' / '1a04e3eab45ca15dd86060f189eb133.txt').unlink()
    with pytest.raises(ObjectDataError, match=r'ShapeNetPart point file not found: .*'
                                              r'1a04e3eab45ca15dd86060f189eb133\.txt'):
        ds[1]
    split = root / 'train_test_split' / 'shuffled_test_file_list.json'
    split.write_text('["shape_data/99999999/abc"]')
    with pytest.raises(ObjectDataError, match=r"shuffled_test_file_list\.json: entry "
                                              r"'shape_data/99999999/abc' names no synset"):
        DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='test'))
    split.write_text('[')
    with pytest.raises(ObjectDataError, match=r'shuffled_test_file_list\.json: not JSON'):
        DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='test'))
    with open(root / 'synsetoffset2category.txt', 'a') as f:
        f.write('Unicorn\t09999999\n')
    with pytest.raises(ObjectDataError, match=r"synsetoffset2category\.txt: categories "
                                              r"\['Unicorn'\] have no part ids"):
        DATASETS.build(dict(type='ShapeNetPartDataset', data_root=str(root), split='train'))
