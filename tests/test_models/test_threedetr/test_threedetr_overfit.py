"""3DETR over-fits one synthetic ScanNet-format scene: boxes, matching and losses are right.

The run goes through the project's runner with the ScanNet config (its pipeline minus the
augmentations, a narrower model, a short schedule) and is scored by mmdet3d's IndoorMetric
on the same scene. The dataset's classes are the scene's classes, so mAP averages over
classes that have ground truth (IndoorMetric gives NaN for a class without any).
"""
import copy
import pickle
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from mmengine.config import Config

SCANNET = REPO_ROOT / 'configs' / '3detr' / '3detr_1xb8-1080e_scannet-3d.py'
NUM_POINTS = 2048
ITERS = 600


def overfit_config(data_root: Path, classes: tuple, work_dir: Path) -> Config:
    """The ScanNet 3DETR config, narrowed and without augmentation, on one scene."""
    cfg = Config.fromfile(str(SCANNET))
    cfg.work_dir = str(work_dir)
    width = 64
    cfg.model.backbone.update(num_points=256, num_samples=32, sa_channels=(32, 64),
                              embed_dims=width, ffn_dims=width, dropout=0.0)
    cfg.model.bbox_head.update(
        num_classes=len(classes), in_channels=width, embed_dims=width, num_queries=128,
        mlp_dropout=0.0, decoder=dict(num_layers=8, num_heads=4, ffn_dims=width, dropout=0.0))
    metainfo = dict(classes=classes)
    train = copy.deepcopy(cfg.train_dataloader.dataset.dataset)
    train.update(data_root=str(data_root), metainfo=metainfo,
                 pipeline=[t for t in train.pipeline if t['type'] not in
                           ('RandomCuboid3D', 'RandomFlip3D', 'GlobalRotScaleTrans')])
    for t in train.pipeline:
        if t['type'] == 'PointSample':
            t['num_points'] = NUM_POINTS
    cfg.train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                                sampler=dict(type='InfiniteSampler', shuffle=False),
                                dataset=train)
    val = copy.deepcopy(cfg.val_dataloader)
    val.update(num_workers=0, persistent_workers=False)
    val.dataset.update(data_root=str(data_root), metainfo=metainfo)
    for t in val.dataset.pipeline:
        for inner in t.get('transforms', []):
            if inner['type'] == 'PointSample':
                inner['num_points'] = NUM_POINTS
    cfg.val_dataloader = cfg.test_dataloader = val
    # Over-fitting, not the paper's schedule: higher lr, no weight decay, looser clipping.
    lr = 2e-3
    cfg.optim_wrapper = dict(type='OptimWrapper',
                             optimizer=dict(type='AdamW', lr=lr, weight_decay=0.0),
                             clip_grad=dict(max_norm=1.0))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=20),
        dict(type='CosineAnnealingLR', T_max=ITERS - 20, eta_min=lr * 0.05, by_epoch=False,
             begin=20, end=ITERS)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=ITERS)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=ITERS, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.mark.slow
def test_3detr_overfits_one_synthetic_scene(tmp_path, synthetic_root):
    from concept_distill.engine import ConceptDistillRunner

    data_root = synthetic_root(num_scenes=1, seed=0, points_per_scene=NUM_POINTS,
                               num_frames=1, image_size=(60, 80))
    infos = pickle.loads((data_root / 'scannet_infos_train.pkl').read_bytes())
    all_classes = Config.fromfile(str(SCANNET)).metainfo['classes']
    labels = {i['bbox_label_3d'] for i in infos['data_list'][0]['instances']}
    classes = tuple(all_classes[i] for i in sorted(labels))
    assert len(classes) >= 8  # a furnished room, not a trivial scene

    runner = ConceptDistillRunner.from_cfg(overfit_config(data_root, classes,
                                                          tmp_path / 'work'))
    runner.train()
    metrics = runner.val()
    per_class = {c: metrics[f'{c}_AP_0.25'] for c in classes}
    assert metrics['mAP_0.25'] >= 0.8, per_class
