"""Over-fit runs on CPU: the classifier and the part segmentor learn a handful of synthetic
objects (read through the real-layout readers and the training pipelines).

Both use a small backbone (4 blocks x 96, 32 patches x 16 points, narrow patch encoder) and
full-batch AdamW with a one-cycle schedule, called through `train_step` / `val_step` as
mmengine's loops do. BatchNorm's running statistics start at var 1 while the first patch
layer sees variances near 1e-3, and momentum 0.1 needs hundreds of steps to forget the
start: a run this short would evaluate with stale statistics. So before evaluating, the
running statistics are re-estimated on the training batch (the "precise BN" step); a real
fine-tuning run (tens of thousands of steps) has converged statistics anyway.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

import concept_distill.datasets.object_datasets
import concept_distill.models.classification
import concept_distill.models.part_segmentation  # noqa: F401
from concept_distill.evaluation.classification_metric import classification_accuracy
from concept_distill.evaluation.part_seg_metric import part_seg_summary, shape_miou

SMALL = dict(type='PointPatchTransformer', num_groups=32, group_size=16, depth=4,
             embed_dims=96, num_heads=4, drop_path_rate=0.0, patch_hidden_channels=(32, 64),
             patch_fuse_channels=128)
CLASSES = ('chair', 'table', 'sofa', 'bed', 'toilet')
TRAIN = [dict(type='ObjectPointSample', num_points=1024, method='random'),
         dict(type='NormalizeObjectPoints'), dict(type='PackObjectInputs')]
TEST = [dict(type='ObjectPointSample', num_points=1024, method='random', deterministic=True),
        dict(type='NormalizeObjectPoints'), dict(type='PackObjectInputs')]


@pytest.fixture(scope='module')
def root(synthetic_objects_root):
    # 4 instances of 5 classes; test split = train split (over-fitting).
    return synthetic_objects_root(num_per_class=4, test_per_class=0, classes=CLASSES,
                                  num_points=2048, shapenet_part_points=2048,
                                  layouts=('modelnet40', 'shapenet_part'))


def _settle_batch_norm(model, batch: dict) -> None:
    """Re-estimate every BatchNorm's running statistics on `batch` (cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
        for _ in range(3):
            model(**data, mode='tensor')
    for m in norms:
        m.momentum = 0.1


def _fit(model, train_set, test_set, iters: int, lr: float) -> list:
    torch.manual_seed(0)
    np.random.seed(0)
    model.init_weights()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iters,
                                                pct_start=0.15)
    wrapper = OptimWrapper(opt)
    n = len(train_set)
    for _ in range(iters):
        model.train()
        model.train_step(pseudo_collate([train_set[i] for i in np.random.permutation(n)]),
                         wrapper)
        sched.step()
    _settle_batch_norm(model, pseudo_collate([train_set[i] for i in range(n)]))
    model.eval()
    return model.val_step(pseudo_collate([test_set[i] for i in range(len(test_set))]))


@pytest.mark.slow
def test_classifier_overfits_synthetic_objects(root):
    kw = dict(type='ModelNet40Dataset', data_root=str(root / 'modelnet40_normal_resampled'),
              split='train', cache_points=True)
    train_set = DATASETS.build(dict(kw, pipeline=TRAIN))
    test_set = DATASETS.build(dict(kw, pipeline=TEST, test_mode=True))
    assert len(train_set) == 20
    model = MODELS.build(dict(type='PointClassifier', backbone=dict(SMALL, use_cls_token=True),
                              num_classes=len(CLASSES), pool=('cls', 'max'), dropout=0.0,
                              label_smoothing=0.0))
    start = time.time()
    out = _fit(model, train_set, test_set, iters=60, lr=2e-3)
    acc = classification_accuracy([int(o.gt_label) for o in out],
                                  [int(o.pred_label) for o in out])
    print(f'classifier over-fit: {acc} in {time.time() - start:.0f} s')
    assert acc['overall_acc'] >= 0.95


@pytest.mark.slow
def test_part_segmentor_overfits_synthetic_objects(root):
    # 3 instances of each class (15 shapes; the list is class-major, 4 per class).
    kw = dict(type='ShapeNetPartDataset', split='trainval', seg_classes_file='seg_classes.json',
              data_root=str(root / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'),
              cache_points=True, indices=[i for i in range(20) if i % 4 < 3])
    train_set = DATASETS.build(dict(kw, pipeline=TRAIN))
    test_set = DATASETS.build(dict(kw, pipeline=TEST, test_mode=True))
    meta = train_set.metainfo
    assert len(train_set) == 15 and len({d['category'] for d in train_set.data_list}) == 5
    model = MODELS.build(dict(type='PointPartSegmentor', backbone=SMALL,
                              num_parts=meta['num_parts'], num_categories=len(meta['classes']),
                              feature_blocks=(1, 2, 3), propagate_dims=64, point_dims=32,
                              head_channels=(64, 64), dropout=0.0))
    start = time.time()
    out = _fit(model, train_set, test_set, iters=160, lr=4e-3)
    summary = part_seg_summary(
        [shape_miou(o.pred_part.numpy(), o.gt_part.numpy(), o.part_ids) for o in out],
        [o.category_name for o in out])
    print(f'part segmentor over-fit: {summary} in {time.time() - start:.0f} s')
    assert summary['instance_miou'] >= 0.9
