"""Every object reader on the synthetic generator's output, and the object transforms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS
from mmengine.dataset import pseudo_collate

from concept_distill.datasets.converters.synthetic.objects import PART_NAMES
from concept_distill.datasets.object_datasets import ObjectPointSample

CLASSES = ('chair', 'table', 'toilet')
KW = dict(num_per_class=3, test_per_class=1, val_per_class=1, classes=CLASSES,
          num_points=3000, shapenet_part_points=2200, num_views=0,
          layouts=('modelnet40', 'modelnet40_h5', 'scanobjectnn', 'shapenet_part'))


@pytest.fixture(scope='module')
def root(synthetic_objects_root):
    return synthetic_objects_root(**KW)


def test_modelnet40_layouts(root):
    text = DATASETS.build(dict(type='ModelNet40Dataset', split='train',
                               data_root=str(root / 'modelnet40_normal_resampled')))
    h5 = DATASETS.build(dict(type='ModelNet40H5Dataset', split='train',
                             data_root=str(root / 'modelnet40_ply_hdf5_2048')))
    assert text.metainfo['classes'] == h5.metainfo['classes'] == CLASSES
    # ShapeNetPart's val objects are train objects in the layouts that have no val split
    assert text.labels().tolist() == h5.labels().tolist() == [0, 0, 1, 1, 2, 2]
    assert text[0]['points'].shape == (3000, 3) and h5[0]['points'].shape == (2048, 3)
    # The h5 copy holds a subset of the same object's points.
    a, b = text[3]['points'], h5[3]['points']
    d = np.linalg.norm(b[:, None] - a[None], axis=2).min(axis=1)
    assert d.max() < 1e-5


@pytest.mark.parametrize('variant', ['OBJ_BG', 'OBJ_ONLY', 'PB_T50_RS'])
def test_scanobjectnn_variants(root, variant):
    ds = DATASETS.build(dict(type='ScanObjectNNDataset', variant=variant, split='test',
                             data_root=str(root / 'scanobjectnn'),
                             metainfo=dict(classes=CLASSES)))
    assert ds.labels().tolist() == [0, 1, 2]
    item = ds[0]
    assert item['points'].shape == (2048, 3)
    background = 1 - item['object_mask'].mean()
    if variant == 'OBJ_ONLY':
        assert background == 0
    else:
        assert 0.05 < background < 0.8
    if variant == 'PB_T50_RS':
        assert np.linalg.norm(item['points'], axis=1).max() <= 1.25 + 1e-5


def test_shapenet_part_layout(root):
    sp = root / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    ds = DATASETS.build(dict(type='ShapeNetPartDataset', split='trainval', data_root=str(sp),
                             seg_classes_file='seg_classes.json', use_normals=True))
    assert len(ds) == 6 and ds.metainfo['classes'] == CLASSES
    assert ds.metainfo['num_parts'] == sum(len(PART_NAMES[c]) for c in CLASSES)
    for i in range(len(ds)):
        item = ds[i]
        assert item['points'].shape == (2200, 6)
        assert set(item['part_labels'].tolist()) <= set(item['part_ids'])
    # The standard 16-category table does not know the synthetic categories.
    with pytest.raises(Exception, match="categories \\['chair', 'table', 'toilet'\\] have no "
                                        'part ids in the standard ShapeNetPart part table'):
        DATASETS.build(dict(type='ShapeNetPartDataset', split='test', data_root=str(sp)))


def test_pipeline_and_collate(root):
    sp = root / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    pipeline = [dict(type='ObjectPointSample', num_points=1024, deterministic=True),
                dict(type='NormalizeObjectPoints'),
                dict(type='ObjectScaleTranslate'),
                dict(type='ObjectRandomRotate'),
                dict(type='PackObjectInputs')]
    ds = DATASETS.build(dict(type='ShapeNetPartDataset', split='test', data_root=str(sp),
                             seg_classes_file='seg_classes.json', use_normals=True,
                             pipeline=pipeline))
    batch = pseudo_collate([ds[0], ds[1]])
    pts = batch['inputs']['points']
    assert [p.shape for p in pts] == [torch.Size([1024, 6])] * 2
    np.testing.assert_allclose(torch.linalg.norm(pts[0][:, 3:], dim=1), 1.0, atol=1e-5)
    sample = batch['data_samples'][1]
    assert sample.gt_part.shape == (1024,) and sample.category == 1
    assert sample.part_ids == [3, 4] and sample.num_points == 1024


def test_point_sample_methods_keep_labels_aligned():
    xyz = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    results = dict(points=xyz, part_labels=np.arange(100), object_mask=np.arange(100) % 2 == 0,
                   sample_idx=3)
    for method in ('first', 'random', 'fps'):
        out = ObjectPointSample(40, method, deterministic=True).transform(dict(results))
        np.testing.assert_array_equal(out['points'], xyz[out['part_labels']])
        np.testing.assert_array_equal(out['object_mask'], out['part_labels'] % 2 == 0)
        again = ObjectPointSample(40, method, deterministic=True).transform(dict(results))
        np.testing.assert_array_equal(out['part_labels'], again['part_labels'])
    first = ObjectPointSample(40, 'first').transform(dict(results))
    assert first['part_labels'].tolist() == list(range(40))
    fps = ObjectPointSample(10, 'fps', deterministic=True).transform(dict(results))
    # FPS spreads out: its minimum pairwise distance beats the first 10 rows'.
    def spread(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=2)
        return d[np.triu_indices(len(p), 1)].min()
    assert spread(fps['points']) > spread(xyz[:10])
    short = ObjectPointSample(150, 'random', deterministic=True).transform(dict(results))
    assert len(short['points']) == 150 and set(short['part_labels'].tolist()) == set(range(100))


def test_fewshot_fold_dataset(root):
    mn = dict(type='ModelNet40Dataset', data_root=str(root / 'modelnet40_normal_resampled'))
    fold = dict(type='FewShotObjectDataset', train_dataset=dict(mn, split='train'),
                test_dataset=dict(mn, split='test'), n_way=2, k_shot=2, n_query=1, fold=1,
                seed=0, pipeline=[dict(type='ObjectPointSample', num_points=256),
                                  dict(type='PackObjectInputs')])
    support = DATASETS.build(dict(fold, split='support'))
    query = DATASETS.build(dict(fold, split='query'))
    assert support.fold == query.fold and len(support) == 4 and len(query) == 2
    drawn = support.fold.classes
    assert support.metainfo['classes'] == tuple(CLASSES[c] for c in drawn)
    labels = [int(support[i]['data_samples'].gt_label) for i in range(4)]
    assert labels == [0, 0, 1, 1]  # relabelled 0..n_way-1 in the drawn order
    shapes = [support.get_data_info(i)['shape_id'] for i in range(4)]
    assert [s.rsplit('_', 1)[0] for s in shapes] == [CLASSES[drawn[0]]] * 2 + \
        [CLASSES[drawn[1]]] * 2
    assert [int(query[i]['data_samples'].gt_label) for i in range(2)] == [0, 1]
