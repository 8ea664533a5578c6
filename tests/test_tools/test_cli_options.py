"""The tools' shared set-up (concept_distill.engine.cli): transform options by type,
package configs, the train options, and the teacher-cache default."""
from __future__ import annotations

import argparse

import pytest
from mmengine.config import Config

from concept_distill.engine.cli import (
    add_override_arguments,
    apply_overrides,
    apply_train_options,
    apply_transform_options,
    config_value,
    load_config,
    pipeline_transforms,
    teacher_cache_dir,
)

PRETRAIN_DEMO = 'configs/demo/pretrain_pointnet2_synthetic.py'
MMDET3D_VOTENET = 'mmdet3d::votenet/votenet_8xb8_scannet-3d.py'


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    return parser.parse_args(list(argv))


def test_transform_options_set_every_transform_of_the_type(repo_root) -> None:
    cfg = Config.fromfile(str(repo_root / PRETRAIN_DEMO))
    args = _parse('--transform-options', 'LoadTeacherFeatures.cache_dir=/tmp/cache',
                  'FrustumPointPairing.num_points=1024')
    apply_overrides(cfg, args)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        pipeline = cfg[loader].dataset.pipeline
        (teacher,) = [t for t in pipeline if t.type == 'LoadTeacherFeatures']
        (pairing,) = [t for t in pipeline if t.type == 'FrustumPointPairing']
        assert teacher.cache_dir == '/tmp/cache' and pairing.num_points == 1024, loader
    assert len(pipeline_transforms(cfg, 'LoadTeacherFeatures')) == 3
    assert teacher_cache_dir(cfg) == '/tmp/cache'


def test_transform_options_reach_through_wrappers_and_nested_transforms() -> None:
    cfg = load_config(MMDET3D_VOTENET)  # RepeatDataset in train; MultiScaleFlipAug3D in test
    apply_transform_options(cfg, {'PointSample.num_points': 1024,
                                  'GlobalRotScaleTrans.rot_range': [0.0, 0.0]})
    wrapped = cfg.train_dataloader.dataset.dataset.pipeline
    assert [t.num_points for t in wrapped if t.type == 'PointSample'] == [1024]
    (aug,) = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'MultiScaleFlipAug3D']
    assert [t.num_points for t in aug.transforms if t.type == 'PointSample'] == [1024]
    assert [t.rot_range for t in aug.transforms if t.type == 'GlobalRotScaleTrans'] == [[0, 0]]
    # A ConcatDataset's members (``datasets``), and a dotted key into a dict field.
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
        dict(pipeline=[dict(type='A', opts=dict(x=1))]), dict(pipeline=[dict(type='A')])]))))
    apply_transform_options(cfg, {'A.opts.x': 2})
    assert [d.pipeline[0].opts.x for d in cfg.train_dataloader.dataset.datasets] == [2, 2]


def test_transform_options_name_a_type_no_pipeline_has(repo_root) -> None:
    cfg = Config.fromfile(str(repo_root / PRETRAIN_DEMO))
    with pytest.raises(KeyError, match="no transform of type 'LoadTeacherFeature'"):
        apply_transform_options(cfg, {'LoadTeacherFeature.cache_dir': 'x'})
    with pytest.raises(ValueError, match='not TYPE.key'):
        apply_transform_options(cfg, {'LoadTeacherFeatures': 'x'})
    assert apply_transform_options(cfg, None) is cfg


def test_cfg_options_apply_before_transform_options(repo_root) -> None:
    cfg = Config.fromfile(str(repo_root / PRETRAIN_DEMO))
    args = argparse.Namespace(cfg_options={'val_dataloader.dataset.pipeline': [dict(type='X')]},
                              transform_options={'X.k': 1})
    apply_overrides(cfg, args)
    assert cfg.val_dataloader.dataset.pipeline == [dict(type='X', k=1)]


def test_package_configs_and_config_values() -> None:
    cfg = load_config(MMDET3D_VOTENET)
    assert cfg.filename.endswith('votenet_8xb8_scannet-3d.py')
    assert config_value(cfg, 'model.backbone.type') == 'PointNet2SASSG'
    with pytest.raises(ModuleNotFoundError, match='not installed'):
        load_config('mmpose::x/y.py')  # mmengine would pip-install it; this never does


def test_train_options(repo_root) -> None:
    cfg = Config.fromfile(str(repo_root / PRETRAIN_DEMO))
    args = argparse.Namespace(amp=False, auto_scale_lr=False, sync_bn='torch', resume='auto',
                              config=PRETRAIN_DEMO)
    apply_train_options(cfg, args)
    assert cfg.resume is True and cfg.load_from is None and cfg.sync_bn == 'torch'
    apply_train_options(cfg, argparse.Namespace(**{**vars(args), 'resume': 'w/iter_5.pth'}))
    assert cfg.load_from == 'w/iter_5.pth'
    with pytest.raises(RuntimeError, match='auto_scale_lr.base_batch_size'):
        apply_train_options(cfg, argparse.Namespace(**{**vars(args), 'auto_scale_lr': True}))
