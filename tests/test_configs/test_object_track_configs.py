"""The classification / part-segmentation configs: recipe values, a pre-training export that
loads with 0 missing / 0 unexpected keys, and one training step of each on synthetic data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

import concept_distill.datasets.object_datasets
import concept_distill.models.classification
import concept_distill.models.part_segmentation  # noqa: F401
from concept_distill.checkpoint.backbone_checkpoint import check_backbone_checkpoint

CLS = REPO_ROOT / 'configs' / 'classification'
SEG = REPO_ROOT / 'configs' / 'part_segmentation'
CONFIGS = sorted([*CLS.glob('*.py'), *SEG.glob('*.py')])
PRETRAIN_MODEL = REPO_ROOT / 'configs' / '_base_' / 'models' / \
    'point-patch-transformer_concept-distill.py'


def _cfg(path: Path) -> Config:
    return Config.fromfile(str(path), import_custom_modules=False)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_recipe(path):
    cfg = _cfg(path)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 10 and cosine.begin == 10
    assert cfg.train_dataloader.batch_size == 32
    fewshot = 'fewshot' in path.name
    assert cfg.train_cfg.max_epochs == (150 if fewshot else 300) == cosine.end
    num_points = cfg.train_dataloader.dataset.pipeline[0].num_points
    assert num_points == (1024 if 'modelnet40' in path.name else 2048)
    pretrained = 'concept-distill' in path.name
    init = cfg.model.backbone.get('init_cfg')
    assert (init is not None) == pretrained
    if pretrained:
        assert init.type == 'Pretrained' and init.prefix == 'backbone.'
        assert [h.type for h in cfg.custom_hooks] == ['PretrainedBackboneCheckHook']
    assert 'concept_distill.datasets.object_datasets' in cfg.custom_imports.imports


@pytest.fixture(scope='module')
def export(tmp_path_factory) -> Path:
    """A backbone export of the pre-training model config (random weights, real keys)."""
    assert PRETRAIN_MODEL.is_file(), f'{PRETRAIN_MODEL} is missing from the checkout'
    backbone = MODELS.build(_cfg(PRETRAIN_MODEL).model.backbone)
    path = tmp_path_factory.mktemp('export') / 'backbone.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in backbone.state_dict().items()}),
               path)
    return path


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'concept-distill' in p.name],
                         ids=lambda p: p.name)
def test_pretraining_export_loads_with_no_missing_or_unexpected_keys(path, export):
    cfg = _cfg(path)
    backbone = dict(cfg.model.backbone)
    backbone.pop('init_cfg')
    report = check_backbone_checkpoint(str(export), backbone, 'backbone.')
    assert report.ok and not report.missing and not report.unexpected


def _one_step(cfg: Config, dataset: dict) -> dict:
    ds = DATASETS.build(dict(cfg.train_dataloader.dataset, **dataset))
    model = MODELS.build(cfg.model)
    batch = pseudo_collate([ds[0], ds[1]])
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    next(iter(losses.values())).backward()
    return losses


@pytest.fixture(scope='module')
def objects_root(synthetic_objects_root):
    return synthetic_objects_root(num_per_class=2, test_per_class=1, classes=('chair', 'sofa'),
                                  num_points=2500, shapenet_part_points=2100,
                                  layouts=('modelnet40', 'scanobjectnn', 'shapenet_part'))


def test_modelnet40_and_scanobjectnn_configs_train_on_synthetic_layouts(objects_root):
    cfg = _cfg(CLS / 'ppt-12x384_1xb32-300e_modelnet40-1k.py')
    cfg.model.num_classes = 2
    losses = _one_step(cfg, dict(data_root=str(objects_root / 'modelnet40_normal_resampled')))
    assert losses['loss_cls'].isfinite()
    cfg = _cfg(CLS / 'ppt-12x384_1xb32-300e_scanobjectnn-obj-bg.py')
    cfg.model.num_classes = 2
    losses = _one_step(cfg, dict(data_root=str(objects_root / 'scanobjectnn'),
                                 metainfo=dict(classes=('chair', 'sofa'))))
    assert losses['loss_cls'].isfinite()


def test_shapenet_part_config_trains_on_the_synthetic_layout(objects_root):
    cfg = _cfg(SEG / 'ppt-12x384_1xb32-300e_shapenet-part.py')
    cfg.model.update(num_parts=7, num_categories=2)
    root = objects_root / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    losses = _one_step(cfg, dict(data_root=str(root), seg_classes_file='seg_classes.json'))
    assert losses['loss_seg'].isfinite()
