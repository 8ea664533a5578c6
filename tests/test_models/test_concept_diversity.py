"""Concepts stay distinct under the default loss; without a per-concept target they collapse.

A small learning run of the concept extractor alone on fixed point tokens, with patch-token
targets built from those tokens (each patch the mean feature of 8 tokens, projected, plus a
shared offset, as CLIP patch tokens share a common component), so that there is something to
match. The default loss of the base model config (per-concept balanced matching + global
cosine + InfoNCE, target centring) is compared with the same loss with the per-concept term
off, where every term sees only the concepts' mean. The measure is the mean pairwise cosine
between the K concepts of one sample.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from mmengine.config import Config

from concept_distill.models.distill import ConceptAlignmentLoss, ConceptExtractor, PointTokens

pytestmark = pytest.mark.slow

BASE_MODEL = REPO_ROOT / 'configs' / '_base_' / 'models' / 'pointnet2-sassg_concept-distill.py'
B, N, C, P, D, K = 8, 256, 64, 49, 64, 16
ITERS = 250


def mean_concept_cosine(concepts: torch.Tensor) -> float:
    """Mean over samples of the mean pairwise cosine between the K concepts of a sample."""
    c = F.normalize(concepts, dim=-1)
    sim = c @ c.transpose(1, 2)
    off = ~torch.eye(sim.shape[-1], dtype=torch.bool)
    return float(sim[:, off].mean())


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4 batches of point tokens (xyz, feats) and their patch targets."""
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(4 * B, N, 3, generator=g) * 4
    feats = torch.randn(4 * B, N, C, generator=g)
    proj = torch.randn(C, D, generator=g) / 8
    members = torch.randint(0, N, (4 * B, P, 8), generator=g)
    patches = torch.stack([feats[i][members[i]].mean(1) for i in range(4 * B)]) @ proj + 0.3
    return xyz, feats, patches


def _train(per_concept: bool) -> float:
    """ITERS steps of extractor + default loss; the concepts' diversity at the end."""
    torch.manual_seed(1)
    xyz, feats, patches = _data()
    cfg = Config.fromfile(str(BASE_MODEL)).model
    extractor_cfg = dict(cfg.concept_extractor.to_dict(), in_channels=C, out_dim=D,
                         embed_dims=64, num_heads=4)
    assert extractor_cfg.pop('type') == 'ConceptExtractor' and extractor_cfg['num_concepts'] == K
    extractor = ConceptExtractor(**extractor_cfg)
    loss_cfg = {k: v for k, v in cfg.loss.to_dict().items() if k != 'type'}
    if not per_concept:
        loss_cfg['concept_target'] = None
    loss = ConceptAlignmentLoss(embed_dim=D, **loss_cfg)
    loss.resolve_concept_target(has_prefix=False)
    params = list(extractor.parameters()) + list(loss.parameters())
    optim = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    for it in range(ITERS):
        i = (it % 4) * B
        concepts = extractor(PointTokens(xyz[i:i + B], feats[i:i + B]))
        targets = {'global': patches[i:i + B].mean(1), 'patch_tokens': patches[i:i + B]}
        total = sum(loss(concepts, targets).values())
        optim.zero_grad()
        total.backward()
        optim.step()
    with torch.no_grad():
        return mean_concept_cosine(extractor(PointTokens(xyz[:B], feats[:B])))


def test_default_loss_keeps_concepts_distinct(one_torch_thread) -> None:
    default, pooler = _train(per_concept=True), _train(per_concept=False)
    _, _, patches = _data()
    print(f"\nmean pairwise cosine between one sample's {K} concepts after {ITERS} steps: "
          f'default loss {default:.3f}, per-concept term off {pooler:.3f} (patch targets: '
          f'{mean_concept_cosine(patches):.3f})')
    assert pooler > 0.99  # nothing separates the concepts: an attention pooler
    assert default < pooler - 0.05
