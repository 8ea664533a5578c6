"""ConceptAlignmentLoss: hand-computed values, minima, gradients, batch of one."""
from __future__ import annotations

import math

import pytest
import torch

from concept_distill.evaluation import alignment_metrics
from concept_distill.models.distill import ConceptAlignmentLoss
from concept_distill.models.distill.concept_alignment_loss import (
    balanced_assignment,
    sample_patch_features,
)


def make_loss(**kwargs) -> ConceptAlignmentLoss:
    """All terms off unless given; temperature fixed at 1 so logits are plain cosines."""
    cfg = dict(token_weight=0.0, global_weight=0.0, contrastive_weight=0.0, set_weight=0.0,
               concept_weight=0.0, temperature=1.0, learnable_temperature=False)
    cfg.update(kwargs)
    return ConceptAlignmentLoss(**cfg)


def test_global_term_hand_values() -> None:
    loss = make_loss(global_weight=2.0)
    concepts = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])  # pooled e1
    same = loss(concepts, {'global': torch.tensor([[3.0, 0.0], [1.0, 0.0]])})
    assert same['loss_global'].item() == pytest.approx(0.0, abs=1e-6)  # scale-invariant minimum
    ortho = loss(concepts, {'global': torch.tensor([[0.0, 1.0], [-1.0, 0.0]])})
    # mean(1 - cos) = mean(1 - 0, 1 + 1) = 1.5, weighted by 2.
    assert ortho['loss_global'].item() == pytest.approx(3.0, abs=1e-6)


def test_contrastive_term_hand_values_and_minimum() -> None:
    loss = make_loss(contrastive_weight=1.0, symmetric=False)
    s = torch.eye(2).unsqueeze(1)  # (B=2, K=1, D=2): pooled rows e1, e2
    matched = loss(s, {'global': torch.eye(2)})['loss_contrastive']
    # logits [[1, 0], [0, 1]] with tau = 1: CE = log(1 + e^-1) for each row.
    assert matched.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    swapped = loss(s, {'global': torch.eye(2).flip(0)})['loss_contrastive']
    assert swapped.item() == pytest.approx(math.log(1 + math.exp(1)), abs=1e-6)
    assert matched < swapped


def test_contrastive_temperature_scales_logits() -> None:
    loss = make_loss(contrastive_weight=1.0, temperature=0.5, symmetric=True)
    s = torch.eye(3).unsqueeze(1)
    value = loss(s, {'global': torch.eye(3)})['loss_contrastive']
    # logits: 2 on the diagonal, 0 elsewhere; both directions equal.
    assert value.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)


def test_contrastive_batch_of_one_does_not_crash() -> None:
    loss = ConceptAlignmentLoss(global_weight=1.0, contrastive_weight=1.0, concept_target=None)
    concepts = torch.randn(1, 4, 8, requires_grad=True)
    out = loss(concepts, {'global': torch.randn(1, 8)})
    assert torch.isfinite(out['loss_contrastive'])
    assert out['loss_contrastive'].item() == pytest.approx(0.0, abs=1e-6)  # no negatives
    sum(out.values()).backward()
    assert torch.isfinite(concepts.grad).all() and concepts.grad.abs().sum() > 0


def test_token_term_cosine_and_smooth_l1() -> None:
    prefix = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    cos = make_loss(token_weight=1.0)
    assert cos(prefix.clone(), {'prefix_tokens': prefix})['loss_token'].item() == pytest.approx(
        0.0, abs=1e-6)
    student = torch.tensor([[[0.0, 1.0], [0.0, 2.0]]])  # token 0 orthogonal, token 1 equal
    assert cos(student, {'prefix_tokens': prefix})['loss_token'].item() == pytest.approx(0.5)
    sl1 = make_loss(token_weight=1.0, token_metric='smooth_l1', smooth_l1_beta=1.0)
    assert sl1(prefix.clone(), {'prefix_tokens': prefix})['loss_token'].item() == 0.0
    # |diff| = 1 on two of four entries, beta 1: 0.5 * 1^2 each -> mean 0.25.
    assert sl1(student, {'prefix_tokens': prefix})['loss_token'].item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match='num_concepts'):
        cos(torch.randn(1, 3, 2), {'prefix_tokens': prefix})


def test_set_term_hand_values() -> None:
    loss = make_loss(set_weight=1.0)
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    same = loss(patches.flip(1).clone(), {'patch_tokens': patches})['loss_set']
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # same set, any order
    one = loss(torch.tensor([[[2.0, 0.0]]]), {'patch_tokens': patches})['loss_set']
    # concept->patch: 1 - 1 = 0; patch->concept: mean(0, 1) = 0.5; symmetric mean: 0.25.
    assert one.item() == pytest.approx(0.25, abs=1e-6)


def test_gradients_reach_only_the_student() -> None:
    loss = ConceptAlignmentLoss(token_weight=1.0, global_weight=1.0, contrastive_weight=1.0,
                                set_weight=1.0, concept_target='patch_tokens', dense_weight=1.0)
    concepts = torch.randn(3, 4, 8, requires_grad=True)
    targets = {'global': torch.randn(3, 8, requires_grad=True),
               'prefix_tokens': torch.randn(3, 4, 8, requires_grad=True),
               'patch_tokens': torch.randn(3, 5, 8, requires_grad=True)}
    dense_student = torch.randn(3, 6, 8, requires_grad=True)
    dense_target = torch.randn(3, 6, 8, requires_grad=True)
    out = loss(concepts, targets, dense=(dense_student, dense_target, torch.ones(3, 6).bool()))
    assert set(out) == {'loss_token', 'loss_global', 'loss_contrastive', 'loss_set',
                        'loss_concept', 'loss_dense'}
    sum(out.values()).backward()
    assert concepts.grad is not None and concepts.grad.abs().sum() > 0
    assert dense_student.grad.abs().sum() > 0 and dense_target.grad is None
    assert all(t.grad is None for t in targets.values())
    assert loss.logit_scale.grad is not None  # the learnable temperature trains too


def test_combined_terms_are_the_weighted_sum() -> None:
    torch.manual_seed(0)
    concepts, glob = torch.randn(4, 2, 6), torch.randn(4, 6)
    single = {name: make_loss(**{f'{name}_weight': 1.0})(concepts, {'global': glob})
              for name in ('global', 'contrastive')}
    both = make_loss(global_weight=0.3, contrastive_weight=2.0)(concepts, {'global': glob})
    assert both['loss_global'].item() == pytest.approx(
        0.3 * single['global']['loss_global'].item())
    assert both['loss_contrastive'].item() == pytest.approx(
        2.0 * single['contrastive']['loss_contrastive'].item())


def test_missing_target_and_bad_config_are_clear_errors() -> None:
    with pytest.raises(KeyError, match='patch_tokens'):
        make_loss(set_weight=1.0)(torch.randn(2, 3, 4), {'global': torch.randn(2, 4)})
    with pytest.raises(ValueError, match='weight 0'):
        make_loss()
    with pytest.raises(ValueError, match='temperature'):
        make_loss(global_weight=1.0, temperature=0.0)


def test_alignment_metrics_retrieval_and_chance() -> None:
    t = torch.eye(8)
    m = alignment_metrics(t.clone(), t, num_candidates=4)
    assert m['top1'] == 1.0 and m['cos'] == pytest.approx(1.0) and m['chance'] == 0.25
    assert m['num_queries'] == 8
    wrong = alignment_metrics(t[[1, 0, 3, 2, 5, 4, 7, 6]], t, num_candidates=4)
    assert wrong['top1'] == 0.0
    assert alignment_metrics(t[:3], t[:3], num_candidates=32)['chance'] == pytest.approx(1 / 3)


def test_target_centring_removes_the_common_component() -> None:
    # Two teacher embeddings that share a large offset (cos 0.98 between them).
    teacher = torch.tensor([[10.0, 1.0], [10.0, -1.0]])
    student = teacher.clone().unsqueeze(1)
    plain = make_loss(contrastive_weight=1.0)
    centred = make_loss(contrastive_weight=1.0, center_momentum=0.5, embed_dim=2)
    cos01 = torch.nn.functional.cosine_similarity(teacher[0], teacher[1], dim=0).item()
    assert plain(student, {'global': teacher})['loss_contrastive'].item() == pytest.approx(
        math.log(1 + math.exp(cos01 - 1)), abs=1e-5)
    # First training batch sets the centre to the mean unit vector; centred pairs are then
    # (0, 1) and (0, -1): logits [[1, -1], [-1, 1]].
    value = centred(student, {'global': teacher})['loss_contrastive'].item()
    assert value == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-5)
    center = centred.target_center.clone()
    assert center[1].item() == pytest.approx(0.0, abs=1e-6)
    # Eval mode leaves the centre alone; training mode moves it by the momentum.
    centred.eval()
    centred(student, {'global': torch.tensor([[0.0, 1.0], [0.0, 1.0]])})
    assert torch.equal(centred.target_center, center)
    centred.train()
    centred(student, {'global': torch.tensor([[0.0, 1.0], [0.0, 1.0]])})
    assert torch.allclose(centred.target_center, 0.5 * center + 0.5 * torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='embed_dim'):
        make_loss(contrastive_weight=1.0, center_momentum=0.9)


def test_retrieval_metric_over_random_and_ordered_galleries() -> None:
    from concept_distill.evaluation import ConceptRetrievalMetric

    t = torch.eye(8)
    perfect = ConceptRetrievalMetric(num_candidates=4, gallery_seed=0)
    perfect.process({}, [dict(student_embedding=t[i], teacher_embedding=t[i]) for i in range(8)])
    out = perfect.compute_metrics(perfect.results)
    assert out['top1'] == out['top1_ordered'] == 1.0
    assert out['chance'] == 0.25 and out['num_candidates'] == 4 and out['top1_over_chance'] == 4
    # Students swap pairs (0,1), (2,3), ...: always wrong while the twin shares the gallery.
    metric = ConceptRetrievalMetric(num_candidates=4, gallery_seed=0)
    metric.process({}, [dict(student_embedding=t[i ^ 1], teacher_embedding=t[i])
                        for i in range(8)])
    out = metric.compute_metrics(metric.results)
    assert out['top1_ordered'] == 0.0 and out['top1'] < 1.0
    with pytest.raises(KeyError, match='predict outputs'):
        metric.process({}, [dict(student_embedding=t[0])])


def _default_loss() -> ConceptAlignmentLoss:
    """The loss exactly as the base model config builds it (and the distiller resolves it)."""
    from conftest import REPO_ROOT
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / '_base_' / 'models' /
                              'pointnet2-sassg_concept-distill.py')).model.loss.to_dict()
    cfg.pop('type')
    return ConceptAlignmentLoss(embed_dim=8, **cfg)


@pytest.mark.parametrize('has_prefix', [False, True])
def test_default_loss_sees_each_concept_not_only_their_mean(has_prefix: bool) -> None:
    """Replacing every concept by the concepts' mean must change the default loss: a loss
    that only sees the mean turns the extractor into a pooler (concepts all alike)."""
    torch.manual_seed(0)
    loss = _default_loss()
    loss.resolve_concept_target(has_prefix)
    assert loss.concept_target == ('prefix_tokens' if has_prefix else 'patch_tokens')
    concepts = torch.randn(4, 5, 8)
    targets = {'global': torch.randn(4, 8), 'patch_tokens': torch.randn(4, 12, 8)}
    if has_prefix:
        targets['prefix_tokens'] = torch.randn(4, 5, 8)
    pooled = concepts.mean(dim=1, keepdim=True).expand_as(concepts)
    loss.eval()  # the InfoNCE centre stays put between the two calls
    distinct = sum(loss(concepts, targets).values())
    mean_only = sum(loss(pooled, targets).values())
    assert abs(distinct.item() - mean_only.item()) > 1e-3
    # Concept k gets its own gradient: a loss of the mean gives every concept the same one.
    c = concepts.clone().requires_grad_(True)
    sum(loss(c, targets).values()).backward()
    spread = (c.grad - c.grad.mean(dim=1, keepdim=True)).norm(dim=-1)
    assert (spread > 1e-3 * c.grad.norm(dim=-1)).all()


def test_balanced_assignment_gives_every_concept_an_equal_share() -> None:
    torch.manual_seed(0)
    sim = torch.nn.functional.normalize(torch.randn(2, 4, 12), dim=1)
    w = balanced_assignment(sim, epsilon=0.05, iters=100)
    assert torch.allclose(w.sum(dim=2), torch.ones(2, 4), atol=1e-5)  # rows: distributions
    assert torch.allclose(w.sum(dim=1), torch.full((2, 12), 4 / 12), atol=0.01)
    # Two identical concepts split the patches instead of both taking the nearest ones.
    patches = torch.eye(4)[[0, 0, 1, 1]]  # two patches along e0, two along e1
    concepts = torch.tensor([[[1.0, 1.0, 0, 0], [1.0, 1.0, 0, 0]]])
    loss = make_loss(concept_target='patch_tokens', concept_weight=1.0)
    value = loss(concepts, {'patch_tokens': patches.unsqueeze(0)})['loss_concept']
    assert value.item() == pytest.approx(1 - 2 ** -0.5, abs=1e-4)  # cos 45 degrees each
    one = balanced_assignment(sim[:, :1], iters=3)
    assert torch.allclose(one, torch.full_like(one, 1 / 12))
    # Nearly identical concepts still split the patches (the similarities are standardised
    # per patch), instead of both being pulled to the mean patch.
    close = torch.tensor([[[1.0, 1.0, 1e-3, 0], [1.0, 1.0, 0, 1e-3]]])
    parts = torch.tensor([[1.0, 1, 1, 0], [1.0, 1, 1, 0], [1.0, 1, 0, 1], [1.0, 1, 0, 1]])
    unit = torch.nn.functional.normalize
    w = balanced_assignment(unit(close, dim=-1) @ unit(parts, dim=-1).t(), iters=20)
    assert torch.allclose(w[0], torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]), atol=1e-2)
    apart = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]])
    assert loss(apart, {'patch_tokens': patches.unsqueeze(0)})['loss_concept'].item() < 1e-3


def test_concept_target_prefix_is_the_token_term_and_auto_needs_tokens() -> None:
    prefix = torch.randn(2, 3, 4)
    loss = make_loss(concept_target='prefix_tokens', concept_weight=2.0)
    same = loss(prefix.clone(), {'prefix_tokens': prefix})['loss_concept']
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    auto = make_loss(concept_target='auto', concept_weight=1.0)
    with pytest.raises(KeyError, match='prefix_tokens or patch_tokens'):
        auto(torch.randn(2, 3, 4), {'global': torch.randn(2, 4)})
    # Unresolved 'auto' takes the prefix tokens when they are given.
    assert auto(prefix.clone(), {'prefix_tokens': prefix})['loss_concept'].item() == \
        pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match='concept_target'):
        make_loss(concept_target='global')
    with pytest.raises(KeyError, match='dense'):
        make_loss(dense_weight=1.0)(torch.randn(2, 3, 4), {'patch_tokens': torch.randn(2, 5, 4)})


def test_dense_term_and_patch_sampling() -> None:
    # A 2x3 grid whose patch (r, c) holds the one-hot vector of index 3r + c.
    patches = torch.eye(6).unsqueeze(0)  # (1, P=6, D=6)
    # Patch centres (c, r) = (0, 0), (1, 1), (2, 1) in grid_sample coordinates.
    centres = torch.tensor([[[-2 / 3, -0.5], [0.0, 0.5], [2 / 3, 0.5]]])
    got = sample_patch_features(patches, (2, 3), centres)
    assert torch.allclose(got[0], torch.eye(6)[[0, 4, 5]], atol=1e-6)
    between = sample_patch_features(patches, (2, 3), torch.tensor([[[-1 / 3, -0.5]]]))
    assert torch.allclose(between[0, 0], 0.5 * (torch.eye(6)[0] + torch.eye(6)[1]), atol=1e-6)
    with pytest.raises(ValueError, match='grid'):
        sample_patch_features(patches, (2, 2), centres)
    loss = make_loss(dense_weight=1.0)
    target = got
    student = torch.stack([got[0, 0], -got[0, 1], got[0, 2]]).unsqueeze(0)
    valid = torch.tensor([[True, True, False]])
    out = loss(torch.randn(1, 2, 6), {'patch_tokens': patches}, dense=(student, target, valid))
    assert out['loss_dense'].item() == pytest.approx(1.0, abs=1e-6)  # mean(0, 2); 3rd masked
