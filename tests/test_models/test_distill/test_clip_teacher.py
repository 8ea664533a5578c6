"""CLIPTeacher: frozen, eval, deterministic random init, local weights only, outputs."""
from __future__ import annotations

import hashlib
from contextlib import nullcontext

import open_clip
import pytest
import torch

from concept_distill.models.distill import CLIPTeacher

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


def test_cache_key_tells_quickgelu_apart() -> None:
    gelu = tiny_teacher(model_name='ViT-B-32')
    quick = tiny_teacher(model_name='ViT-B-32-quickgelu')
    assert not gelu.quick_gelu and quick.quick_gelu
    assert gelu.cache_key()['quick_gelu'] is False and quick.cache_key()['quick_gelu'] is True
    # Same weights digest (same seed), different networks: the key must differ.
    assert gelu.cache_key()['weights_digest'] == quick.cache_key()['weights_digest']
    assert gelu.cache_key() != quick.cache_key()
    assert not torch.allclose(gelu(images())['global'], quick(images())['global'])


@pytest.mark.parametrize('mode', ['squash', 'shortest', 'longest'])
def test_pixels_to_grid_follows_the_preprocessing(mode: str) -> None:
    """A bright column at pixel u lands where pixels_to_grid says, in every resize mode."""
    teacher = tiny_teacher(resize_mode=mode)
    h, w, u = 48, 64, 40
    img = torch.zeros(1, 3, h, w)
    img[..., u] = 255.0
    x = teacher.preprocess(img)[0, 0]  # (32, 32)
    column = int(x.mean(dim=0).argmax())
    xy, valid = teacher.pixels_to_grid(torch.tensor([[float(u), 10.0]]), (h, w))
    assert bool(valid[0])
    predicted = (xy[0, 0].item() + 1) / 2 * teacher.image_size[1] - 0.5
    assert abs(predicted - column) <= 0.5
    # A pixel cropped away by the centre crop is not valid.
    _, outside = teacher.pixels_to_grid(torch.tensor([[0.0, 10.0]]), (h, w))
    assert bool(outside[0]) == (mode != 'shortest')


def test_openai_release_digests_come_from_open_clip() -> None:
    from concept_distill.models.distill.clip_teacher import openai_release_digests

    table = openai_release_digests()
    # ViT-B-32.pt is published under its sha256.
    assert table['40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af'] == \
        'ViT-B-32'
    assert 'ViT-B-16' in table.values() and not any(n.endswith('quickgelu')
                                                   for n in table.values())


@pytest.fixture(scope='module')
def openai_style_file(tmp_path_factory) -> tuple[str, torch.Tensor]:
    """A tiny CLIP saved as OpenAI does (a TorchScript archive), and its image embedding."""
    cfg = dict(TINY, quick_gelu=True)
    with torch.random.fork_rng():
        torch.manual_seed(11)
        eager = open_clip.create_model('ViT-B-32-quickgelu', pretrained=None, **cfg)
    scripted = torch.jit.script(eager)
    path = tmp_path_factory.mktemp('openai') / 'ViT-B-32.pt'
    scripted.save(str(path))
    ref = tiny_teacher(model_name='ViT-B-32-quickgelu')  # only for its preprocessing
    eager.visual.output_tokens = True
    with torch.no_grad():
        embedding = eager.visual(ref.preprocess(images()))[0]
    return str(path), embedding


def test_openai_weights_need_the_quickgelu_name(openai_style_file, monkeypatch) -> None:
    from concept_distill.models.distill import clip_teacher

    path, embedding = openai_style_file
    digest = clip_teacher.file_sha256(path)
    monkeypatch.setattr(clip_teacher, 'openai_release_digests', lambda: {digest: 'ViT-B-32'})
    with pytest.raises(ValueError, match="QuickGELU.*'ViT-B-32'.*ViT-B-32-quickgelu"):
        CLIPTeacher(model_name='ViT-B-32', pretrained=path, arch_overrides=TINY)
    with pytest.raises(ValueError, match="ViT-B-32 release but teacher.model_name is "
                                         "'ViT-B-16-quickgelu'"):
        CLIPTeacher(model_name='ViT-B-16-quickgelu', pretrained=path, arch_overrides=TINY)
    # Under the right name the TorchScript archive loads (torch.load would refuse it).
    teacher = CLIPTeacher(model_name='ViT-B-32-quickgelu', pretrained=path, arch_overrides=TINY)
    assert teacher.weights_digest == digest and teacher.quick_gelu
    assert torch.allclose(teacher(images())['global'], embedding, atol=1e-5)


# -- ClipCap prefix mappers -----------------------------------------------------------------
# Fixtures are written from ClipCap's public description (rmokady/CLIP_prefix_caption,
# train.py: ClipCaptionModel saves `clip_project.*` = MLP or TransformerMapper, and
# `gpt.*` = GPT2LMHeadModel), with random values; never by this project's save code.
CLIPCAP = dict(num_prefix=4, prefix_dim=16)  # stand-ins for ClipCap's 10 x 768
CLIP_LENGTH, MAPPER_LAYERS, MAPPER_HEADS = 3, 2, 8


def clipcap_state(mapping_type: str, embed_dim: int = 32, seed: int = 0) -> dict:
    """A ClipCaptionModel state dict: `clip_project.*` of the given type, plus GPT-2 keys."""
    g = torch.Generator().manual_seed(seed)
    k, w = CLIPCAP['num_prefix'], CLIPCAP['prefix_dim']

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    if mapping_type == 'mlp':  # MLP((prefix_size, K*W // 2, K*W)), Tanh between
        hidden = k * w // 2
        sd['clip_project.model.0.weight'] = rand(hidden, embed_dim)
        sd['clip_project.model.0.bias'] = rand(hidden)
        sd['clip_project.model.2.weight'] = rand(k * w, hidden)
        sd['clip_project.model.2.bias'] = rand(k * w)
    else:  # TransformerMapper(prefix_size, W, K, clip_length, num_layers)
        sd['clip_project.linear.weight'] = rand(CLIP_LENGTH * w, embed_dim)
        sd['clip_project.linear.bias'] = rand(CLIP_LENGTH * w)
        sd['clip_project.prefix_const'] = rand(k, w, scale=1.0)
        for i in range(MAPPER_LAYERS):
            p = f'clip_project.transformer.layers.{i}.'
            for norm in ('norm1', 'norm2'):
                sd[p + norm + '.weight'] = 1 + rand(w)
                sd[p + norm + '.bias'] = rand(w)
            sd[p + 'attn.to_queries.weight'] = rand(w, w)  # bias=False in ClipCap's layers
            sd[p + 'attn.to_keys_values.weight'] = rand(2 * w, w)
            sd[p + 'attn.project.weight'] = rand(w, w)
            sd[p + 'attn.project.bias'] = rand(w)
            sd[p + 'mlp.fc1.weight'] = rand(2 * w, w)  # mlp_ratio 2
            sd[p + 'mlp.fc1.bias'] = rand(2 * w)
            sd[p + 'mlp.fc2.weight'] = rand(w, 2 * w)
            sd[p + 'mlp.fc2.bias'] = rand(w)
    # GPT-2 (HF GPT2LMHeadModel names; Conv1D weights are (in, out)).
    sd['gpt.transformer.wte.weight'] = rand(50, w)
    sd['gpt.transformer.wpe.weight'] = rand(8, w)
    sd['gpt.transformer.h.0.ln_1.weight'] = rand(w)
    sd['gpt.transformer.h.0.attn.c_attn.weight'] = rand(w, 3 * w)
    sd['gpt.transformer.h.0.attn.c_attn.bias'] = rand(3 * w)
    sd['gpt.transformer.h.0.attn.c_proj.weight'] = rand(w, w)
    sd['gpt.transformer.h.0.mlp.c_fc.weight'] = rand(w, 4 * w)
    sd['gpt.transformer.ln_f.weight'] = rand(w)
    sd['gpt.lm_head.weight'] = sd['gpt.transformer.wte.weight'].clone()
    return sd


def clipcap_reference(sd: dict, mapping_type: str, embedding: torch.Tensor) -> torch.Tensor:
    """ClipCap's mapping computed with plain tensor ops from the state dict (B, K, W)."""
    f = torch.nn.functional
    k, w = CLIPCAP['num_prefix'], CLIPCAP['prefix_dim']
    c = {key[len('clip_project.'):]: v for key, v in sd.items() if key.startswith('clip_p')}
    b = embedding.shape[0]
    if mapping_type == 'mlp':
        hidden = torch.tanh(embedding @ c['model.0.weight'].t() + c['model.0.bias'])
        return (hidden @ c['model.2.weight'].t() + c['model.2.bias']).view(b, k, w)
    x = embedding / embedding.norm(dim=-1, keepdim=True)
    x = (x @ c['linear.weight'].t() + c['linear.bias']).view(b, CLIP_LENGTH, w)
    x = torch.cat([x, c['prefix_const'].expand(b, k, w)], dim=1)
    n, h = x.shape[1], MAPPER_HEADS
    for i in range(MAPPER_LAYERS):
        p = f'transformer.layers.{i}.'
        y = f.layer_norm(x, (w,), c[p + 'norm1.weight'], c[p + 'norm1.bias'])
        q = (y @ c[p + 'attn.to_queries.weight'].t()).reshape(b, n, h, w // h)
        kv = (y @ c[p + 'attn.to_keys_values.weight'].t()).reshape(b, n, 2, h, w // h)
        att = torch.einsum('bnhd,bmhd->bnmh', q, kv[:, :, 0]) * (w // h) ** -0.5
        out = torch.einsum('bnmh,bmhd->bnhd', att.softmax(dim=2), kv[:, :, 1]).reshape(b, n, w)
        x = x + out @ c[p + 'attn.project.weight'].t() + c[p + 'attn.project.bias']
        y = f.layer_norm(x, (w,), c[p + 'norm2.weight'], c[p + 'norm2.bias'])
        y = torch.relu(y @ c[p + 'mlp.fc1.weight'].t() + c[p + 'mlp.fc1.bias'])
        x = x + y @ c[p + 'mlp.fc2.weight'].t() + c[p + 'mlp.fc2.bias']
    return x[:, CLIP_LENGTH:]


def clipcap_mapping(path, mapping_type: str, **kwargs) -> dict:
    """The teacher's `mapping` config for a ClipCap file of the fixture's sizes."""
    cfg = dict(checkpoint=str(path), mapping_type=mapping_type,
               clip_model='ViT-B-32-quickgelu', **CLIPCAP)
    if mapping_type == 'transformer':
        cfg.update(clip_length=CLIP_LENGTH, num_layers=MAPPER_LAYERS)
    cfg.update(kwargs)
    return cfg


@pytest.mark.parametrize('mapping_type', ['mlp', 'transformer'])
def test_clipcap_files_load_and_give_clipcap_prefix_tokens(tmp_path, mapping_type: str) -> None:
    from concept_distill.models.distill.prefix_mapping import (
        build_prefix_mapper,
        load_clipcap_mapper,
    )

    sd = clipcap_state(mapping_type)
    path = tmp_path / 'coco_weights.pt'
    torch.save(sd, path)
    teacher = tiny_teacher(model_name='ViT-B-32-quickgelu',
                           mapping=clipcap_mapping(path, mapping_type))
    out = teacher(images())
    assert out['prefix_tokens'].shape == (2, 4, 16)
    ref = clipcap_reference(sd, mapping_type, out['global'])
    assert torch.allclose(out['prefix_tokens'], ref, atol=1e-5)
    assert not any(p.requires_grad for p in teacher.mapping.parameters())
    key = teacher.cache_key()
    assert key['mapping_digest'] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert key['mapping']['mapping_type'] == mapping_type
    assert key['mapping']['clip_model'] == 'ViT-B-32-quickgelu'
    # Every clip_project.* tensor is kept; the 9 gpt.* tensors are ignored and counted.
    mapper = build_prefix_mapper(32, mapping_type, **{
        k: v for k, v in clipcap_mapping(path, mapping_type).items()
        if k not in ('checkpoint', 'mapping_type', 'clip_model')})
    counts = load_clipcap_mapper(mapper, sd, 'coco_weights.pt')
    assert counts == dict(kept=sum(k.startswith('clip_project.') for k in sd), ignored=9)


def test_clipcap_file_mismatches_are_clear_errors(tmp_path) -> None:
    sd = clipcap_state('mlp')

    def save(state: dict, name: str) -> str:
        torch.save(state, tmp_path / name)
        return str(tmp_path / name)

    good = save(sd, 'good.pt')

    def build(path: str, model_name: str = 'ViT-B-32-quickgelu', **mapping) -> None:
        tiny_teacher(model_name=model_name, mapping=clipcap_mapping(path, 'mlp', **mapping))

    with pytest.raises(ValueError, match="unexpected keys.*'optimizer_step'") as err:
        build(save(dict(sd, optimizer_step=torch.tensor(3)), 'extra.pt'))
    assert 'extra.pt' in str(err.value)
    with pytest.raises(ValueError, match=r"missing keys \['clip_project.model.2.bias'\]"):
        build(save({k: v for k, v in sd.items() if k != 'clip_project.model.2.bias'}, 'm.pt'))
    with pytest.raises(ValueError, match='shape mismatches'):
        build(good, num_prefix=5)
    with pytest.raises(ValueError, match="width 24.*'ViT-B-32-quickgelu' embeds in 32"):
        build(save(clipcap_state('mlp', embed_dim=24), 'rn.pt'))
    with pytest.raises(ValueError, match="'mlp' mapper but teacher.mapping.mapping_type is "
                                         "'transformer'"):
        tiny_teacher(model_name='ViT-B-32-quickgelu',
                     mapping=clipcap_mapping(good, 'transformer'))
    with pytest.raises(ValueError, match="trained on CLIP 'ViT-B-16-quickgelu'.*"
                                         "'ViT-B-32-quickgelu'"):
        build(good, clip_model='ViT-B-16-quickgelu')
    with pytest.raises(ValueError, match='QuickGELU.*ViT-B-32-quickgelu'):
        build(good, model_name='ViT-B-32', clip_model='ViT-B-32')
    with pytest.raises(ValueError, match='mapping.clip_model is required'):
        build(good, clip_model=None)
    with pytest.raises(ValueError, match='not a ClipCap model state dict'):
        build(save({k[len('clip_project.'):]: v for k, v in sd.items()
                    if k.startswith('clip_project.')}, 'bare.pt'))


def test_clipcap_real_sizes_from_the_config(repo_root) -> None:
    """The ClipCap config builds ClipCap's released MLP shapes: 512 -> 3840 -> 10 x 768."""
    from mmengine.config import Config

    from concept_distill.models.distill.prefix_mapping import build_prefix_mapper

    cfg = Config.fromfile(str(repo_root / 'configs' / 'pretrain' /
                              'pointnet2-sassg_concept-distill-clipcap_8xb8-100e_scannet-frames'
                              '.py')).model
    mapping = cfg.teacher.mapping.to_dict()
    assert cfg.teacher.model_name == mapping['clip_model'] == 'ViT-B-32-quickgelu'
    assert open_clip.get_model_config('ViT-B-32-quickgelu')['embed_dim'] == 512
    assert cfg.concept_extractor.num_concepts == mapping['num_prefix'] == 10
    with torch.device('meta'):  # shapes only, no 30M-parameter allocation
        mapper = build_prefix_mapper(512, mapping.pop('mapping_type'), **{
            k: v for k, v in mapping.items() if k not in ('checkpoint', 'clip_model')})
    shapes = {k: tuple(v.shape) for k, v in mapper.state_dict().items()}
    assert shapes == {'model.0.weight': (3840, 512), 'model.0.bias': (3840,),
                      'model.2.weight': (7680, 3840), 'model.2.bias': (7680,)}
    assert mapper.normalize_input is False


@pytest.mark.parametrize('mapping_type', ['mlp', 'transformer'])
def test_package_mappers_load_a_clipcap_file(tmp_path, mapping_type: str) -> None:
    """Both mapper classes, as the package exports them, load a ClipCap file as saved."""
    from concept_distill.models.distill import (
        MAPPING_TYPES,
        PrefixMappingNetwork,
        TransformerPrefixMapper,
        load_clipcap_mapper,
    )

    assert MAPPING_TYPES == ('mlp', 'transformer')
    path = tmp_path / 'clipcap.pt'
    torch.save(clipcap_state(mapping_type, seed=3), path)
    state = torch.load(path, weights_only=True)
    if mapping_type == 'mlp':  # ClipCap: MLP((prefix_size, K*W // 2, K*W))
        mapper = PrefixMappingNetwork(32, **CLIPCAP)
    else:  # ClipCap: TransformerMapper(prefix_size, W, K, clip_length, num_layers)
        mapper = TransformerPrefixMapper(32, clip_length=CLIP_LENGTH, num_layers=MAPPER_LAYERS,
                                         num_heads=MAPPER_HEADS, **CLIPCAP)
    assert mapper.mapping_type == mapping_type
    counts = load_clipcap_mapper(mapper, state, str(path))
    assert counts == dict(kept=sum(k.startswith('clip_project.') for k in state), ignored=9)
    embedding = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = mapper(embedding)
    assert out.shape == (3, CLIPCAP['num_prefix'], CLIPCAP['prefix_dim'])
    assert torch.allclose(out, clipcap_reference(state, mapping_type, embedding), atol=1e-5)


def test_transformer_mapper_mismatches_name_the_keys() -> None:
    from concept_distill.models.distill import TransformerPrefixMapper, load_clipcap_mapper

    state = clipcap_state('transformer')
    deeper = TransformerPrefixMapper(32, clip_length=CLIP_LENGTH, num_layers=MAPPER_LAYERS + 1,
                                     **CLIPCAP)
    with pytest.raises(ValueError, match=r"x\.pt does not match the configured 'transformer' "
                                         r"mapper.*missing keys \['clip_project\.transformer"
                                         r"\.layers\.2\."):
        load_clipcap_mapper(deeper, state, 'x.pt')
    longer = TransformerPrefixMapper(32, clip_length=CLIP_LENGTH + 1, num_layers=MAPPER_LAYERS,
                                     **CLIPCAP)
    with pytest.raises(ValueError, match=r'clip_project\.linear\.weight: file \(48, 32\) vs '
                                         r'model \(64, 32\)'):
        load_clipcap_mapper(longer, state, 'x.pt')


def test_transformer_mapper_has_clipcap_released_shapes() -> None:
    """ClipCap's released transformer model: RN50x4 (D = 640), K = L = 40, W = 768, 8 layers
    of 8 heads, MLP ratio 2 (its train.py defaults for --mapping_type transformer)."""
    from concept_distill.models.distill import TransformerPrefixMapper

    with torch.device('meta'):
        mapper = TransformerPrefixMapper(640, num_prefix=40, prefix_dim=768, clip_length=40)
    shapes = {k: tuple(v.shape) for k, v in mapper.state_dict().items()}
    want = {'linear.weight': (40 * 768, 640), 'linear.bias': (40 * 768,),
            'prefix_const': (40, 768)}
    for i in range(8):
        p = f'transformer.layers.{i}.'
        want.update({p + 'norm1.weight': (768,), p + 'norm1.bias': (768,),
                     p + 'attn.to_queries.weight': (768, 768),
                     p + 'attn.to_keys_values.weight': (1536, 768),
                     p + 'attn.project.weight': (768, 768), p + 'attn.project.bias': (768,),
                     p + 'norm2.weight': (768,), p + 'norm2.bias': (768,),
                     p + 'mlp.fc1.weight': (1536, 768), p + 'mlp.fc1.bias': (1536,),
                     p + 'mlp.fc2.weight': (768, 1536), p + 'mlp.fc2.bias': (768,)})
    assert shapes == want
    assert mapper.normalize_input is True
