"""3DETR recipes (issue 17): the fine-tune config stops on a wrong checkpoint, and the
3DETR-m encoder pre-training config builds, trains a step and exports what 3DETR-m loads."""
from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT
from distill_builders import TINY_CLIP, optim_wrapper_for, paired_batch
from mmdet3d.registry import MODELS
from mmengine.config import Config

from concept_distill.checkpoint import BackboneCheckpointError
from concept_distill.hooks import PretrainedBackboneCheckHook

FINETUNE = REPO_ROOT / 'configs/3detr/3detr_concept-distill_1xb8-1080e_scannet-3d.py'
MASKED = REPO_ROOT / 'configs/3detr/3detr-m_1xb8-1080e_scannet-3d.py'
MASKED_PRETRAIN = (REPO_ROOT / 'configs/pretrain'
                   / '3detr-m-encoder_concept-distill_8xb8-100e_scannet-frames.py')
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _runner(model) -> SimpleNamespace:
    """What PretrainedBackboneCheckHook reads of a runner."""
    return SimpleNamespace(model=model, logger=logging.getLogger('3detr-config-test'),
                           _load_from=None, _resume=False)


def test_finetune_config_stops_on_a_wrong_checkpoint(tmp_path) -> None:
    cfg = Config.fromfile(str(FINETUNE))
    assert [h.type for h in cfg.custom_hooks] == ['PretrainedBackboneCheckHook']
    # A checkpoint of another encoder (128 wide instead of 256), as a wrong path would give.
    other = MODELS.build(dict(copy.deepcopy(cfg.model.backbone.to_dict()), init_cfg=None,
                              embed_dims=128, ffn_dims=64))
    path = tmp_path / 'backbone_other.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in other.state_dict().items()}),
               path)
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    detector = MODELS.build(cfg.model)
    (hook_cfg,) = cfg.custom_hooks
    hook = PretrainedBackboneCheckHook(**{k: v for k, v in hook_cfg.items() if k != 'type'})
    with pytest.raises(BackboneCheckpointError, match='shape'):
        hook.before_run(_runner(detector))


def test_masked_pretraining_config_builds_trains_and_matches_3detr_m() -> None:
    cfg = Config.fromfile(str(MASKED_PRETRAIN))
    assert cfg.model.type == 'ConceptDistiller'
    assert cfg.model.concept_extractor.type == 'InterleavedConceptExtractor'
    det = Config.fromfile(str(MASKED))
    fields = ('masking_radius', 'dropout', 'interim_num_points', 'interim_radius',
              'interim_num_samples', 'interim_channels', 'embed_dims', 'num_layers')
    assert {f: cfg.model.backbone[f] for f in fields} == {f: det.model.backbone[f] for f in fields}
    # The export's keys are the 3DETR-m encoder's, shape for shape.
    pre_backbone = MODELS.build(cfg.model.backbone)
    enc = MODELS.build({k: v for k, v in det.model.backbone.items() if k != 'init_cfg'})
    assert {k: v.shape for k, v in pre_backbone.state_dict().items()} == \
        {k: v.shape for k, v in enc.state_dict().items()}
    # One step at a small size (fewer sampled points, tiny random teacher; same names).
    cfg.model.allow_random_teacher = True
    cfg.model.backbone.update(num_points=128, interim_num_points=64, num_samples=16,
                              interim_num_samples=8)
    cfg.model.teacher.arch_overrides = TINY_CLIP
    cfg.model.concept_extractor.update(num_concepts=4, embed_dims=32, num_heads=4)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='RANDOMLY'):
        model = MODELS.build(cfg.model)
    model.train()
    log = model.train_step(paired_batch(b=2, n=512), optim_wrapper_for(model))
    assert torch.isfinite(log['loss'])
