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


def _types(node) -> set[str]:
    """Every string `type` in a config tree (not init_cfg's: mmengine's weight initialisers)."""
    if isinstance(node, dict):
        own = {node['type']} if isinstance(node.get('type'), str) else set()
        return own.union(*(_types(v) for k, v in node.items() if k != 'init_cfg'))
    if isinstance(node, (list, tuple)):
        return set().union(*(_types(v) for v in node))
    return set()


def test_custom_imports_alone_register_every_type() -> None:
    """A fresh process that imports only a config's `custom_imports` (as mmengine does)
    finds each type the config names in mmdet3d's registries."""
    import json
    import subprocess
    import sys

    wanted = {}
    for path in CONFIGS:
        cfg = _cfg(path)
        keys = ('model', 'train_dataloader', 'val_dataloader', 'val_evaluator', 'custom_hooks')
        wanted[path.name] = dict(imports=list(cfg.custom_imports.imports),
                                 types=sorted(_types([cfg.get(k) for k in keys])))
    code = '''import importlib, json, sys
from mmdet3d.registry import DATA_SAMPLERS, DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS
from mmengine.registry import DefaultScope
wanted = json.loads(sys.argv[1])
missing = {}
for name, w in wanted.items():
    for m in w['imports']:
        importlib.import_module(m)
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        gone = [t for t in w['types'] if not any(r.get(t) for r in
                (DATA_SAMPLERS, DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS))]
    if gone:
        missing[name] = gone
print(json.dumps(missing))
'''
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(wanted)], capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}
    assert all(w['types'] for w in wanted.values())


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
