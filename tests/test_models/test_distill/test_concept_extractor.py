"""ConceptExtractor: shapes, padding mask, permutation invariance, gradients, attention maps."""
from __future__ import annotations

import pytest
import torch

from concept_distill.models.distill import (
    ConceptExtractor,
    InterleavedConceptExtractor,
    LayeredPointTokens,
    PointTokens,
)


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


def test_attention_maps_through_the_api() -> None:
    torch.manual_seed(0)
    ext = ConceptExtractor(in_channels=16, out_dim=8, num_concepts=4, embed_dims=32,
                           num_layers=3, num_heads=4).eval()
    t = tokens(b=2, n=10)
    out, maps = ext(t, return_attention=True)
    # Asking for the maps does not change the concepts (torch may pick another kernel).
    assert torch.allclose(out, ext(t), atol=1e-5)
    assert len(maps) == 3 and all(m.shape == (2, 4, 10) for m in maps)
    for m in maps:  # a distribution over the point tokens, per concept (heads averaged)
        assert (m >= 0).all() and torch.allclose(m.sum(-1), torch.ones(2, 4), atol=1e-5)
    # Padded tokens get no attention; the valid ones carry the same maps as unpadded.
    xyz = torch.cat([t.xyz, torch.full((2, 6, 3), 100.0)], dim=1)
    feats = torch.cat([t.feats, torch.randn(2, 6, 16) * 50], dim=1)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :10] = True
    _, padded = ext(PointTokens(xyz, feats, mask), return_attention=True)
    assert padded[-1].shape == (2, 4, 16) and padded[-1][..., 10:].abs().max() == 0
    assert torch.allclose(padded[-1][..., :10], maps[-1], atol=1e-5)


def test_interleaved_extractor_returns_one_map_per_encoder_layer() -> None:
    torch.manual_seed(0)
    ext = InterleavedConceptExtractor(in_channels=16, out_dim=8, num_concepts=4, embed_dims=32,
                                      num_layers=2, num_heads=4).eval()
    per_layer = [tokens(b=1, n=12, seed=s) for s in (1, 2)]
    t = LayeredPointTokens(*per_layer[-1])
    t.layers = per_layer
    out, maps = ext(t, return_attention=True)
    assert torch.allclose(out, ext(t), atol=1e-5)
    assert [m.shape for m in maps] == [(1, 4, 12)] * 2
    # Each concept layer reads its own encoder layer's tokens, so the maps differ.
    assert not torch.allclose(maps[0], maps[1], atol=1e-3)
    # Plain tokens fall back to the base class, maps included.
    plain, plain_maps = ext(per_layer[-1], return_attention=True)
    assert plain.shape == (1, 4, 8) and len(plain_maps) == 2
