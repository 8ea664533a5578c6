"""CLIPTeacher: frozen, eval, deterministic random init, local weights only, outputs."""
from __future__ import annotations

import hashlib
from contextlib import nullcontext

import open_clip
import pytest
import torch

from concept_distill.models.distill import CLIPTeacher, PrefixMappingNetwork

# A tiny ViT-B-16-shaped tower so tests run in milliseconds (the real ViT-B-16 is tested once).
TINY = dict(embed_dim=32,
            vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32, patch_size=16),
            text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))


def tiny_teacher(**kwargs) -> CLIPTeacher:
    """A CLIPTeacher over the tiny architecture."""
    kwargs.setdefault('arch_overrides', TINY)
    random_init = kwargs.get('pretrained') is None
    with pytest.warns(UserWarning, match='RANDOMLY') if random_init else nullcontext():
        return CLIPTeacher(**kwargs)


def images(n: int = 2, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Random uint8 RGB images (B, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def test_outputs_shapes_and_normalisation_from_open_clip() -> None:
    teacher = tiny_teacher()
    out = teacher(images())
    assert out['global'].shape == (2, 32)
    assert out['patch_tokens'].shape == (2, 4, 32)  # (32 / 16)^2 patches, projected to D
    assert 'prefix_tokens' not in out
    assert out['global'].dtype == torch.float32
    assert teacher.mean == tuple(open_clip.OPENAI_DATASET_MEAN)
    assert teacher.std == tuple(open_clip.OPENAI_DATASET_STD)
    # uint8 and float 0-255 inputs are the same images.
    ref = teacher(images().float())
    assert torch.allclose(out['global'], ref['global'], atol=1e-5)
    # The pooled embedding is the projected CLS token: patch tokens are projected with the
    # same matrix, so they are in the same space (here: the same width).
    assert out['patch_tokens'].shape[-1] == teacher.embed_dim


def test_preprocess_resizes_and_normalises() -> None:
    teacher = tiny_teacher()
    white = torch.full((1, 3, 10, 20), 255, dtype=torch.uint8)
    x = teacher.preprocess(white)
    assert x.shape == (1, 3, 32, 32)
    expected = (1 - torch.tensor(teacher.mean)) / torch.tensor(teacher.std)
    assert torch.allclose(x[0, :, 5, 5], expected, atol=1e-5)
    with pytest.raises(ValueError, match='B, 3, H, W'):
        teacher.preprocess(torch.zeros(3, 8, 8))


def test_frozen_and_eval_even_after_train() -> None:
    teacher = tiny_teacher()
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    imgs = images().float().requires_grad_(True)
    out = teacher(imgs)
    assert not out['global'].requires_grad  # no_grad: nothing to back-propagate into


def test_random_init_is_deterministic_and_keyed_by_seed() -> None:
    a, b = tiny_teacher(seed=3), tiny_teacher(seed=3)
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), na
    assert a.cache_key() == b.cache_key()
    assert a.cache_key()['weights_digest'] == 'random-init-seed3'
    c = tiny_teacher(seed=4)
    assert c.cache_key() != a.cache_key()
    assert not torch.allclose(a(images())['global'], c(images())['global'])
    key = a.cache_key()
    assert set(key) >= {'model_name', 'weights_digest', 'image_size', 'mean', 'std',
                        'mapping_digest'}
    assert key['image_size'] == [32, 32] and key['mapping_digest'] is None


def test_loads_a_local_weights_file_and_digests_it(tmp_path) -> None:
    src = tiny_teacher(seed=7)
    # A full open_clip state dict (both towers), as open_clip saves one.
    with torch.random.fork_rng():
        torch.manual_seed(7)
        full = open_clip.create_model('ViT-B-16', pretrained=None, **TINY)
    path = tmp_path / 'clip.pt'
    torch.save(full.state_dict(), path)
    teacher = CLIPTeacher(pretrained=str(path), arch_overrides=TINY)
    assert teacher.weights_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.allclose(teacher(images())['global'], src(images())['global'], atol=1e-5)


def test_never_downloads(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match='local files only'):
        CLIPTeacher(pretrained='openai', arch_overrides=TINY)  # a tag, not a file
    with pytest.raises(FileNotFoundError):
        CLIPTeacher(pretrained=str(tmp_path / 'missing.pt'), arch_overrides=TINY)
    with pytest.raises(ValueError, match='never downloads'):
        CLIPTeacher(model_name='hf-hub:org/model')


def test_prefix_tokens_from_a_frozen_mapping_file(tmp_path) -> None:
    mapper = PrefixMappingNetwork(32, num_prefix=4, prefix_dim=16)
    path = tmp_path / 'mapper.pt'
    torch.save(mapper.state_dict(), path)
    teacher = tiny_teacher(mapping=dict(checkpoint=str(path), num_prefix=4, prefix_dim=16))
    out = teacher(images())
    assert out['prefix_tokens'].shape == (2, 4, 16)
    assert torch.allclose(out['prefix_tokens'], mapper(out['global']), atol=1e-6)
    assert teacher.cache_key()['mapping_digest'] == hashlib.sha256(
        path.read_bytes()).hexdigest()
    assert not any(p.requires_grad for p in teacher.mapping.parameters())
    # ClipCap's own key names load too.
    clipcap = {k.replace('fc1', 'clip_project.model.0').replace('fc2', 'clip_project.model.2'): v
               for k, v in mapper.state_dict().items()}
    torch.save(clipcap, tmp_path / 'clipcap.pt')
    tiny_teacher(mapping=dict(checkpoint=str(tmp_path / 'clipcap.pt'), num_prefix=4,
                              prefix_dim=16))
    with pytest.raises(ValueError, match='shape mismatches'):
        tiny_teacher(mapping=dict(checkpoint=str(path), num_prefix=5, prefix_dim=16))


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_low_precision_matches_fp32(precision: str) -> None:
    ref = tiny_teacher()(images())['global']
    low = tiny_teacher(precision=precision)(images())['global']
    assert low.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(ref, low, dim=-1)
    assert (cos > 0.99).all()


def test_default_vit_b16_shapes() -> None:
    with pytest.warns(UserWarning, match='demonstrate'):
        teacher = CLIPTeacher()  # ViT-B-16, random init
    out = teacher(images(1, 120, 160))
    assert out['global'].shape == (1, 512) and out['patch_tokens'].shape == (1, 196, 512)
    assert teacher.cache_key()['image_size'] == [224, 224]
