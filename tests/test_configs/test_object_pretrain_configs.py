"""The object pre-training configs (ShapeNet-55 views): the real recipe refuses a random
teacher, reads cached teacher features of the view pairs, and its backbone is the one the
object-track configs build (same keys and shapes); the demo variant is its small copy."""
from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS
from mmengine.config import Config

from concept_distill.engine.cli import apply_transform_options

PRETRAIN = REPO_ROOT / 'configs' / 'pretrain' / \
    'ppt-12x384_concept-distill_8xb8-100e_shapenet55-views.py'
DEMO = REPO_ROOT / 'configs' / 'demo' / 'pretrain_ppt_objects_synthetic.py'
DOWNSTREAM = [REPO_ROOT / 'configs' / 'classification' /
              'ppt-12x384_concept-distill_1xb32-300e_modelnet40-1k.py',
              REPO_ROOT / 'configs' / 'part_segmentation' /
              'ppt-12x384_concept-distill_1xb32-300e_shapenet-part.py']


def _cfg(path) -> Config:
    return Config.fromfile(str(path), import_custom_modules=False)


def _types(pipeline) -> list[str]:
    return [t['type'] for t in pipeline]


def test_recipe_reads_view_pairs_and_cached_teacher_features():
    cfg = _cfg(PRETRAIN)
    train = cfg.train_dataloader.dataset
    assert train.type == 'ShapeNet55ViewPairDataset' and train.split == 'train'
    assert cfg.val_dataloader.dataset.test_mode and cfg.val_dataloader.dataset.split == 'test'
    assert _types(train.pipeline) == [
        'LoadObjectPoints', 'LoadPairedImage', 'ResizeCropForTeacher', 'FrustumPointPairing',
        'NormalizeObjectPoints', 'LoadTeacherFeatures', 'ObjectScaleTranslate',
        'PackPairedInputs']
    cached = train.pipeline[5]
    assert cached.tokens  # the default loss's per-concept term reads patch tokens
    assert train.pipeline[1].with_pixels is False  # images are not decoded: cached teacher
    assert train.pipeline[3].num_points == 1024
    assert cfg.model.teacher.pretrained is None and cfg.model.allow_random_teacher is False
    assert [h.type for h in cfg.custom_hooks] == ['ConceptDistillHook']


def test_recipe_refuses_a_random_teacher():
    cfg = _cfg(PRETRAIN)
    with pytest.raises(ValueError, match='allow_random_teacher'):
        MODELS.build(cfg.model)


@pytest.mark.parametrize('path', DOWNSTREAM, ids=lambda p: p.parent.name)
def test_recipe_backbone_is_the_downstream_backbone(path):
    pre = MODELS.build(_cfg(PRETRAIN).model.backbone).state_dict()
    down_cfg = dict(_cfg(path).model.backbone)
    down_cfg.pop('init_cfg')
    down = MODELS.build(down_cfg).state_dict()
    assert pre.keys() == down.keys()
    assert all(pre[k].shape == down[k].shape for k in pre)
    assert 'shapenet55-views' in _cfg(path).pretrained_backbone


def test_demo_is_the_small_recipe_and_its_cache_dir_is_an_option():
    cfg = _cfg(DEMO)
    assert cfg.model.allow_random_teacher is True
    assert (cfg.model.backbone.depth, cfg.model.backbone.embed_dims) == (4, 128)
    assert cfg.model.concept_extractor.num_layers == 4
    assert cfg.train_dataloader.dataset.data_root == 'data/synthetic_objects/ShapeNet55/'
    assert _types(cfg.train_dataloader.dataset.pipeline) == \
        _types(_cfg(PRETRAIN).train_dataloader.dataset.pipeline)
    apply_transform_options(cfg, {'LoadTeacherFeatures.cache_dir': '/elsewhere'})
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        (t,) = [t for t in loader.dataset.pipeline if t['type'] == 'LoadTeacherFeatures']
        assert t['cache_dir'] == '/elsewhere'
