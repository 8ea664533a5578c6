"""ConceptExtractor: shapes, padding mask, permutation invariance, gradients."""
from __future__ import annotations

import pytest
import torch

from concept_distill.models.distill import ConceptExtractor, PointTokens


def tokens(b: int = 2, n: int = 20, c: int = 16, seed: int = 0) -> PointTokens:
    """Random point tokens (xyz in a 4 m room)."""
    g = torch.Generator().manual_seed(seed)
    return PointTokens(torch.rand(b, n, 3, generator=g) * 4, torch.randn(b, n, c, generator=g))


@pytest.mark.parametrize('pos', ['fourier', 'learned', None])
def test_shapes_and_gradients(pos: str | None) -> None:
    ext = ConceptExtractor(in_channels=16, out_dim=24, num_concepts=5, embed_dims=32,
                           num_layers=2, num_heads=4, pos_encoding=pos)
    out = ext(tokens())
    assert out.shape == (2, 5, 24)
    out.pow(2).mean().backward()
    assert ext.queries.grad is not None and ext.queries.grad.abs().sum() > 0
    assert ext.input_proj[0].weight.grad.abs().sum() > 0


def test_padded_tokens_are_ignored() -> None:
    torch.manual_seed(0)
    ext = ConceptExtractor(in_channels=16, out_dim=8, num_concepts=4, embed_dims=32,
                           num_heads=4).eval()
    t = tokens(b=1, n=10)
    ref = ext(t)
    xyz = torch.cat([t.xyz, torch.full((1, 6, 3), 100.0)], dim=1)
    feats = torch.cat([t.feats, torch.randn(1, 6, 16) * 50], dim=1)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[:, :10] = True
    padded = ext(PointTokens(xyz, feats, mask))
    assert torch.allclose(ref, padded, atol=1e-5)
    # Without the mask the garbage tokens do change the concepts.
    assert not torch.allclose(ref, ext(PointTokens(xyz, feats, None)), atol=1e-3)
    # A cloud with no valid token stays finite.
    empty = ext(PointTokens(xyz, feats, torch.zeros_like(mask)))
    assert torch.isfinite(empty).all()


def test_token_order_does_not_matter_but_positions_do() -> None:
    torch.manual_seed(0)
    ext = ConceptExtractor(in_channels=16, out_dim=8, num_concepts=4, embed_dims=32,
                           num_heads=4).eval()
    t = tokens(b=1, n=12)
    perm = torch.randperm(12)
    shuffled = PointTokens(t.xyz[:, perm], t.feats[:, perm])
    assert torch.allclose(ext(t), ext(shuffled), atol=1e-5)
    # Same features at other places (not a rigid shift: positions are centred) differ.
    moved = PointTokens(t.xyz * 2.0, t.feats)
    assert not torch.allclose(ext(t), ext(moved), atol=1e-3)


def test_invalid_configs_and_tokens() -> None:
    with pytest.raises(ValueError, match='pos_encoding'):
        ConceptExtractor(pos_encoding='sine')
    with pytest.raises(ValueError, match='num_concepts'):
        ConceptExtractor(num_concepts=0)
    with pytest.raises(ValueError, match='B, N, 3'):
        PointTokens(torch.zeros(2, 5), torch.zeros(2, 5, 4)).check()
    with pytest.raises(ValueError, match='mask'):
        PointTokens(torch.zeros(2, 5, 3), torch.zeros(2, 5, 4),
                    torch.ones(2, 5)).check()
