"""ConceptDistiller on CPU: frozen teacher outside the optimizer, loss / predict modes, cache."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from distill_builders import (
    REPO,
    TINY_CLIP,
    build_distiller,
    distiller_cfg,
    optim_wrapper_for,
    paired_batch,
)
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config


def test_teacher_is_frozen_outside_optimizer_and_state_dict() -> None:
    model = build_distiller()
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert teacher_ids and not teacher_ids & {id(p) for p in model.parameters()}
    optim = optim_wrapper_for(model)
    in_optim = {id(p) for g in optim.optimizer.param_groups for p in g['params']}
    assert not in_optim & teacher_ids
    assert {id(p) for p in model.backbone.parameters()} <= in_optim
    assert id(model.alignment_loss.logit_scale) in in_optim
    assert not any(k.startswith('teacher') for k in model.state_dict())
    model.train()
    assert model.training and model.backbone.training and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    # Device / dtype moves reach the teacher even though it is not a submodule.
    model.double()
    assert next(model.teacher.parameters()).dtype == torch.float64
    model.float()
    assert next(model.teacher.parameters()).dtype == torch.float32


def test_train_step_trains_the_student_only() -> None:
    torch.manual_seed(0)
    model = build_distiller()
    optim = optim_wrapper_for(model)
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    backbone_before = copy.deepcopy(model.backbone.state_dict())
    model.train()
    log = model.train_step(paired_batch(), optim)
    log = model.train_step(paired_batch(seed=1), optim)
    assert {'loss', 'loss_concept', 'loss_global', 'loss_contrastive', 'loss_set',
            'align_cos', 'align_top1', 'temperature'} <= set(log)
    assert torch.isfinite(log['loss'])
    assert log['loss'].item() == pytest.approx(
        (log['loss_concept'] + log['loss_global'] + log['loss_contrastive']
         + log['loss_set']).item(), rel=1e-5)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    changed = [k for k, v in model.backbone.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, backbone_before[k])]
    assert any(k.endswith('conv.weight') for k in changed)
    assert not model.teacher.training
    assert bool(model.alignment_loss.center_ready)  # the InfoNCE centre tracks the teacher
    assert 'alignment_loss.target_center' in model.state_dict()  # and resumes with the run


def test_predict_returns_student_and_teacher_embeddings() -> None:
    model = build_distiller()
    data = paired_batch(b=2)
    out = model.val_step(data)
    assert len(out) == 2
    teacher = model.teacher(torch.stack(data['inputs']['img']))['global']
    teacher = torch.nn.functional.normalize(teacher, dim=-1)  # unit vectors (no centre yet)
    for i, sample in enumerate(out):
        assert sample.student_embedding.shape == (32,)
        assert sample.concepts.shape == (4, 32)
        assert torch.allclose(sample.teacher_embedding, teacher[i], atol=1e-5)
    concepts = model(model.data_preprocessor(paired_batch(b=2))['inputs'], mode='tensor')
    assert concepts.shape == (2, 4, 32)


def test_cached_targets_bypass_the_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_distiller()

    def no_teacher(*args, **kwargs):
        raise AssertionError('the teacher must not run when the cache provides targets')

    monkeypatch.setattr(model.teacher, 'forward', no_teacher)
    data = paired_batch(b=2, img=False)
    for sample in data['data_samples']:
        sample.teacher_global = torch.randn(32).half()
        sample.teacher_tokens = torch.randn(4, 32).half()
    losses = model.loss(**model.data_preprocessor(data, True))
    assert torch.isfinite(sum(v for k, v in losses.items() if 'loss' in k))
    # Without a cache and without images there is no target: a clear error.
    with pytest.raises(KeyError, match='teacher_global'):
        model.loss(**model.data_preprocessor(paired_batch(b=2, img=False), True))


def test_prefix_token_mode_checks_concept_count() -> None:
    mapping = dict(checkpoint=None, num_prefix=4, prefix_dim=16)
    loss = dict(token_weight=1.0, set_weight=0.0)
    model = build_distiller(teacher=dict(mapping=mapping), loss=loss)
    assert model.prefix_head is not None and model.prefix_head.out_features == 16
    # With a mapper, the default per-concept target is prefix token k.
    assert model.alignment_loss.concept_target == 'prefix_tokens'
    losses = model.loss(**model.data_preprocessor(paired_batch(b=2), True))
    assert losses['loss_token'] > 0 and losses['loss_concept'] > 0
    with pytest.raises(ValueError, match='num_prefix=4'):
        build_distiller(teacher=dict(mapping=mapping), loss=loss,
                        concept_extractor=dict(num_concepts=5))


def test_default_concept_target_without_a_mapper_is_the_patch_tokens() -> None:
    model = build_distiller(loss=dict(set_weight=0.0))
    assert model.alignment_loss.concept_target == 'patch_tokens'
    assert model.alignment_loss.needs == {'global', 'patch_tokens'}
    assert model.dense_head is None  # the dense term is off by default


def test_random_teacher_needs_the_flag(tmp_path) -> None:
    import open_clip

    cfg = distiller_cfg(allow_random_teacher=False)
    with pytest.raises(ValueError, match=r'model\.teacher\.pretrained is not set.*'
                                         r'model\.allow_random_teacher=True'):
        MODELS.build(cfg)
    # Weights given, but a configured mapper without its file is just as random.
    weights = tmp_path / 'clip.pt'
    torch.save(open_clip.create_model('ViT-B-16', pretrained=None, **TINY_CLIP).state_dict(),
               weights)
    cfg['teacher'].update(pretrained=str(weights),
                          mapping=dict(checkpoint=None, num_prefix=4, prefix_dim=16))
    with pytest.raises(ValueError, match=r'model\.teacher\.mapping\.checkpoint is not set'):
        MODELS.build(cfg)
    cfg['teacher']['mapping'] = None
    assert MODELS.build(cfg).teacher.weights_digest != 'random-init-seed0'


@pytest.mark.parametrize('path', sorted((Path(REPO) / 'configs' / 'pretrain').glob('*.py')),
                         ids=lambda p: p.name)
def test_pretrain_configs_refuse_a_random_teacher(path: Path) -> None:
    model = Config.fromfile(str(path)).model
    assert model.allow_random_teacher is False
    with pytest.raises(ValueError, match='model.teacher.pretrained'):
        MODELS.build(model)


def test_dense_term_reads_the_patch_feature_at_each_tokens_pixel() -> None:
    from concept_distill.models.distill import PointTokens

    model = build_distiller(loss=dict(set_weight=0.0, dense_weight=1.0))
    assert model.dense_head is not None
    # Tiny teacher: 32 px input, 2 x 2 patches; a 32 x 32 frame is not resized.
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    sample = Det3DDataSample(metainfo=dict(img_shape=(32, 32)))
    sample.pixel_uv = torch.tensor([[7.5, 7.5], [23.5, 7.5], [7.5, 23.5], [23.5, 23.5]])
    patches = torch.eye(32)[:4].unsqueeze(0)  # patch (r, c) -> one-hot 2r + c
    # Tokens at points 3, 1, 2 (slightly off: the nearest point gives the pixel).
    tokens = PointTokens(pts[[3, 1, 2]].unsqueeze(0) + 1e-3, torch.randn(1, 3, 256))
    inputs = dict(points=[torch.cat([pts, torch.zeros(4, 1)], dim=1)])
    student, target, valid = model.dense_pairs(tokens, inputs, [sample], patches)
    assert student.shape == (1, 3, 32) and bool(valid.all())
    assert torch.allclose(target[0], torch.eye(32)[[3, 1, 2]], atol=1e-6)
    # A full step: the dense term trains the backbone through the dense head.
    model.train()
    data = model.data_preprocessor(paired_batch(b=2), True)
    losses = model.loss(**data)
    assert torch.isfinite(losses['loss_dense']) and losses['loss_dense'] > 0
    losses['loss_dense'].backward()
    assert model.dense_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters())
    assert not any(k.startswith('backbone.') for k, _ in model.dense_head.named_parameters())


def test_logged_temperature_is_the_clamped_one_the_loss_applies() -> None:
    """A logit scale past `max_logit_scale` (100) is clamped by the loss; the log says 0.01."""
    import math

    model = build_distiller()
    data = model.data_preprocessor(paired_batch(b=2), True)
    with torch.no_grad():
        model.alignment_loss.logit_scale.fill_(math.log(1000.0))
    over = model.loss(**data)
    assert over['temperature'].item() == pytest.approx(0.01, rel=1e-5)
    with torch.no_grad():
        model.alignment_loss.logit_scale.fill_(math.log(100.0))
    at = model.loss(**data)
    assert at['loss_contrastive'].item() == pytest.approx(over['loss_contrastive'].item(),
                                                          rel=1e-6)
    with torch.no_grad():
        model.alignment_loss.logit_scale.fill_(math.log(20.0))  # below the clamp: as is
    assert model.loss(**data)['temperature'].item() == pytest.approx(0.05, rel=1e-5)
