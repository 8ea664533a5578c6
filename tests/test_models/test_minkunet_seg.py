"""MinkUNet (spconv) segmentation configs: build, train step and prediction on real data, CPU."""
from __future__ import annotations

import copy
from pathlib import Path

import mmdet3d
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, METRICS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

from concept_distill.models.distill import MinkUNetTokenAdapter  # noqa: F401

CFG_DIR = REPO_ROOT / 'configs' / 'minkunet'
SCANNET = CFG_DIR / 'minkunet34_w32_spconv_8xb2-cosine-200e_scannet-seg.py'
S3DIS = CFG_DIR / 'minkunet34_w32_spconv_8xb2-cosine-600e_s3dis-seg.py'
SCANNET_PT = CFG_DIR / 'minkunet34_w32_spconv_concept-distill_8xb2-cosine-200e_scannet-seg.py'
S3DIS_PT = CFG_DIR / 'minkunet34_w32_spconv_concept-distill_8xb2-cosine-600e_s3dis-seg.py'


# spconv's CPU path runs on one thread in these tests (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _dataset_cfg(cfg: Config, split: str, fixtures: Path, kind: str) -> dict:
    """The config's dataset of `split`, pointed at a real fixture."""
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    ds = copy.deepcopy(loader.dataset)
    if kind == 'scannet':
        ds.update(data_root=str(fixtures / 'scannet_tiny'), ann_file='scannet_infos.pkl')
    else:
        ds.update(data_root=str(fixtures / 's3dis'), ann_files=['s3dis_infos.pkl'])
    return ds


@pytest.mark.parametrize('path,num_classes,dataset',
                         [(SCANNET, 20, 'ScanNetWholeSceneSegDataset'),
                          (S3DIS, 13, 'S3DISWholeSceneSegDataset'),
                          (SCANNET_PT, 20, 'ScanNetWholeSceneSegDataset'),
                          (S3DIS_PT, 13, 'S3DISWholeSceneSegDataset')])
def test_config_settings(path: Path, num_classes: int, dataset: str) -> None:
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'MinkUNet'
    assert cfg.model.backbone.sparseconv_backend == 'spconv'
    assert cfg.model.data_preprocessor.voxel_type == 'minkunet'
    assert cfg.model.data_preprocessor.batch_first is True
    assert cfg.model.data_preprocessor.voxel_layer.voxel_size == [0.02] * 3
    assert cfg.model.decode_head.num_classes == num_classes == len(cfg.class_names)
    assert cfg.model.decode_head.ignore_index == num_classes
    assert cfg.train_dataloader.dataset.type == dataset == cfg.test_dataloader.dataset.type
    assert cfg.train_dataloader.dataset.scene_idxs is None  # whole scenes, no resampling
    assert cfg.val_evaluator.type == 'SegMetric'
    train_ops = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'IndoorPatchPointSample' not in train_ops
    assert {'GlobalRotScaleTrans', 'RandomFlip3D', 'NormalizePointsColor',
            'PointSegClassMapping'} <= set(train_ops)
    test_ops = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
    assert 'PointSegClassMapping' in test_ops
    if dataset == 'S3DISWholeSceneSegDataset':
        assert cfg.train_dataloader.dataset.ann_files == [
            f's3dis_infos_Area_{i}.pkl' for i in (1, 2, 3, 4, 6)]
        assert cfg.test_dataloader.dataset.ann_files == 's3dis_infos_Area_5.pkl'
    init_cfg = cfg.model.backbone.get('init_cfg')
    if 'concept-distill' in path.name:
        assert init_cfg.type == 'Pretrained' and init_cfg.prefix == 'backbone.'
    else:
        assert init_cfg is None


def test_mmdet3d_own_spconv_config_runs_on_cpu() -> None:
    """mmdet3d's unmodified SemanticKITTI MinkUNet (spconv) trains and predicts on CPU tensors."""
    path = (Path(mmdet3d.__file__).parent / '.mim' / 'configs' / 'minkunet' /
            'minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py')
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    model.init_weights()
    from mmdet3d.structures import Det3DDataSample, PointData
    g = torch.Generator().manual_seed(0)
    samples, points = [], []
    for n in (300, 200):
        points.append(torch.cat([torch.rand(n, 3, generator=g) * 10, torch.rand(n, 1)], 1))
        s = Det3DDataSample()
        s.gt_pts_seg = PointData(pts_semantic_mask=torch.randint(0, 19, (n, ), generator=g))
        samples.append(s)
    data = model.data_preprocessor(dict(inputs=dict(points=points), data_samples=samples),
                                   training=True)
    model.train()
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss_sem_seg'])
    losses['loss_sem_seg'].backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=dict(points=points), data_samples=samples))
        preds = model(**data, mode='predict')
    assert [len(p.pred_pts_seg.pts_semantic_mask) for p in preds] == [300, 200]


@pytest.mark.parametrize('kind,path', [('scannet', SCANNET), ('s3dis', S3DIS)])
def test_train_step_and_predict_on_real_fixture(kind: str, path: Path,
                                                fixtures_root: Path) -> None:
    cfg = Config.fromfile(str(path))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    train_set = DATASETS.build(_dataset_cfg(cfg, 'train', fixtures_root, kind))
    item = train_set[0]
    labels = item['data_samples'].gt_pts_seg.pts_semantic_mask
    assert item['inputs']['points'].shape == (100, 6)
    assert int(labels.max()) <= len(cfg.class_names)  # mapped to 0..C (C = ignore)
    assert float(item['inputs']['points'][:, 3:].max()) <= 1.0  # colours normalised

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    log_vars = model.train_step(pseudo_collate([item, train_set[0]]), optim_wrapper)
    assert torch.isfinite(log_vars['loss']) and float(log_vars['loss']) > 0
    changed = [k for k, v in model.backbone.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) > 10

    test_set = DATASETS.build(_dataset_cfg(cfg, 'test', fixtures_root, kind))
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = test_set.metainfo
    model.eval()
    batch = pseudo_collate([test_set[0]])
    with torch.no_grad():
        outputs = model.val_step(batch)
    pred = outputs[0].pred_pts_seg.pts_semantic_mask
    assert pred.shape == (100, ) and int(pred.min()) >= 0 and int(pred.max()) < len(
        cfg.class_names)
    gt = outputs[0].eval_ann_info['pts_semantic_mask']
    assert gt.max() <= len(cfg.class_names)  # the evaluator sees mapped labels, not raw ids
    metric.process(batch, [o.to_dict() for o in outputs])
    results = metric.compute_metrics(metric.results)
    assert {'miou', 'acc', 'acc_cls'} <= set(results)
    assert 0.0 <= results['acc'] <= 1.0


def test_whole_scene_datasets_visit_every_scene_once(fixtures_root: Path) -> None:
    from mmdet3d.datasets import ScanNetSegDataset
    cfg = Config.fromfile(str(S3DIS))
    ds_cfg = _dataset_cfg(cfg, 'train', fixtures_root, 's3dis')
    ds_cfg.ann_files = ['s3dis_infos.pkl', 's3dis_infos.pkl']  # two "areas"
    s3dis = DATASETS.build(ds_cfg)
    assert len(s3dis) == 2 and not s3dis.test_mode
    ds_cfg.scene_idxs = [[0, 0, 0], [0]]  # explicit resampling still honoured
    assert len(DATASETS.build(ds_cfg)) == 4
    scannet = DATASETS.build(_dataset_cfg(Config.fromfile(str(SCANNET)), 'train', fixtures_root,
                                          'scannet'))
    assert isinstance(scannet, ScanNetSegDataset) and len(scannet) == 1


def test_backbone_builds_twice_from_one_config() -> None:
    """mmdet3d's MinkUNetBackbone inserts into the lists it is given; concept_distill copies."""
    cfg = Config.fromfile(str(SCANNET))
    backbone_cfg = cfg.model.backbone
    first = MODELS.build(backbone_cfg)
    second = MODELS.build(backbone_cfg)
    assert backbone_cfg.encoder_channels == [32, 64, 128, 256]
    assert backbone_cfg.decoder_channels == [256, 128, 96, 96]
    assert first.state_dict().keys() == second.state_dict().keys()
    defaults = [MODELS.build(dict(type='MinkUNetBackbone', sparseconv_backend='spconv'))
                for _ in range(2)]  # the constructor's default lists are not mutated either
    assert defaults[0].state_dict().keys() == defaults[1].state_dict().keys()
