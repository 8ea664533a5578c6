"""The paper's student (PointPatchTransformer) and its token adapter, on CPU (and CUDA if any).

Shapes, patches, per-block tokens, the state-dict layout downstream models load, determinism;
inside the ConceptDistiller: the point stream is bit-identical to the backbone run alone,
one concept layer reads each block, and every block gets a gradient from the concept loss.
"""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config

from concept_distill.models.backbones import PatchGrouping, PointPatchTransformer, knn_indices
from concept_distill.models.distill import LayeredPointTokens, PointTokens

BASE_MODEL_CFG = REPO_ROOT / 'configs' / '_base_' / 'models' / \
    'point-patch-transformer_concept-distill.py'
SCENE_CFG = REPO_ROOT / 'configs' / 'pretrain' / \
    'ppt-12x384_concept-distill_8xb8-100e_scannet-frames.py'
DEMO_CFG = REPO_ROOT / 'configs' / 'demo' / 'pretrain_ppt_synthetic.py'
# A tiny random open_clip ViT (32-d embedding, 2x2 patches of a 32 px image).
TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32,
                                 patch_size=16),
                 text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))
# Many small GEMMs: one intra-op thread is faster on a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures('one_torch_thread')
SMALL = dict(num_groups=16, group_size=8, embed_dims=32, num_heads=4,
             patch_hidden_channels=(16, 32), patch_fuse_channels=64, pos_hidden=16)


def small_ppt(**kwargs) -> PointPatchTransformer:
    """A narrow PointPatchTransformer (12 blocks unless told)."""
    return MODELS.build(dict(type='PointPatchTransformer', **{**SMALL, **kwargs}))


def clouds(b: int = 2, n: int = 256, c: int = 3, seed: int = 0) -> torch.Tensor:
    """Random room-sized clouds (B, N, c): xyz in metres, then c - 3 extra channels."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(b, n, 3, generator=g) * torch.tensor([4.0, 4.0, 2.5])
    return torch.cat([xyz, torch.rand(b, n, c - 3, generator=g)], dim=-1)


def block_keys(i: int) -> list[str]:
    """The documented keys of block ``i``."""
    return [f'blocks.{i}.{k}' for k in (
        'norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight',
        'attn.proj.bias', 'norm2.weight', 'norm2.bias', 'mlp.0.weight', 'mlp.0.bias',
        'mlp.3.weight', 'mlp.3.bias')]


# -- the backbone ------------------------------------------------------------------------------
def test_output_shapes_and_per_block_tokens() -> None:
    torch.manual_seed(0)
    model = small_ppt(depth=5, in_channels=4).eval()
    points = clouds(b=3, n=300, c=4)
    out = model(points)
    assert set(out) == {'xyz', 'tokens', 'features', 'cls', 'center_idx', 'patch_idx'}
    assert out['xyz'].shape == (3, 16, 3)
    assert len(out['tokens']) == 5
    assert all(t.shape == (3, 16, 32) for t in out['tokens'])
    assert out['features'] is out['tokens'][-1]
    assert out['cls'] is None
    assert out['center_idx'].shape == (3, 16) and out['center_idx'].dtype == torch.long
    assert out['patch_idx'].shape == (3, 16, 8) and out['patch_idx'].dtype == torch.long
    # The last block's tokens went through the final LayerNorm (zero mean, unit variance per
    # token with its initial affine, up to its eps); earlier ones are the raw residual stream.
    last = out['features']
    assert torch.allclose(last.mean(-1), torch.zeros(3, 16), atol=1e-5)
    assert torch.allclose(last.var(-1, unbiased=False), torch.ones(3, 16), atol=1e-2)
    assert not torch.allclose(out['tokens'][-2].var(-1, unbiased=False), torch.ones(3, 16),
                              atol=0.5)
    # Distinct blocks give distinct tokens.
    assert not torch.allclose(out['tokens'][0], out['tokens'][1])

    with_cls = small_ppt(depth=2, use_cls_token=True).eval()
    out = with_cls(clouds(b=2))
    assert out['cls'].shape == (2, 32)
    assert all(t.shape == (2, 16, 32) for t in out['tokens'])  # patch tokens only


def test_patches_are_fps_centres_and_their_nearest_points() -> None:
    points = clouds(b=2, n=400, c=3, seed=1)
    out = small_ppt(depth=1).eval()(points)
    xyz, cidx, pidx = points, out['center_idx'], out['patch_idx']
    centers = torch.stack([xyz[b, cidx[b]] for b in range(2)])
    assert torch.equal(out['xyz'], centers)
    assert all(len(set(c.tolist())) == 16 for c in cidx)  # FPS: no repeated centre
    assert (cidx[:, 0] == 0).all()  # mmcv's FPS starts from the first point
    for b in range(2):
        d = torch.cdist(centers[b], xyz[b])
        want = d.topk(8, largest=False).indices
        assert torch.equal(pidx[b].sort(-1).values, want.sort(-1).values)
        assert torch.equal(pidx[b][:, 0], cidx[b])  # nearest first: the centre itself
    # Members are sent to the patch encoder relative to their centre.
    grouping = PatchGrouping(16, 8)
    patches = grouping(points)
    member = torch.stack([xyz[b, patches.patch_idx[b]] for b in range(2)])
    assert torch.allclose(patches.neighborhood, member - patches.centers.unsqueeze(2))
    assert patches.features is None


def test_large_patches_use_exact_distances() -> None:
    # mmcv's knn refuses k >= 100: larger patches take the chunked exact path.
    xyz = clouds(b=2, n=500, c=3, seed=2)
    centers = xyz[:, :40]
    small = knn_indices(xyz, centers, 20)
    exact = knn_indices(xyz, centers, 120, chunk=16)
    assert exact.shape == (2, 40, 120)
    assert torch.equal(exact[..., :20].sort(-1).values, small.sort(-1).values)
    want = torch.cdist(centers, xyz).topk(120, largest=False).indices
    assert torch.equal(exact.sort(-1).values, want.sort(-1).values)


def test_extra_point_features_reach_the_patch_encoder() -> None:
    torch.manual_seed(0)
    model = small_ppt(depth=1, in_channels=5).eval()
    points = clouds(c=5)
    changed = points.clone()
    changed[..., 3:] += 1.0
    a, b = model(points)['features'], model(changed)['features']
    assert not torch.allclose(a, b)
    assert torch.equal(model(points)['center_idx'], model(changed)['center_idx'])


def test_bad_inputs_are_clear_errors() -> None:
    model = small_ppt(depth=1, in_channels=3)
    with pytest.raises(ValueError, match=r'expects points \(B, N, 3\)'):
        model(clouds(c=4))
    with pytest.raises(ValueError, match='cannot give 16 patches'):
        model(clouds(n=10))
    with pytest.raises(ValueError, match='not divisible'):
        small_ppt(embed_dims=30)
    with pytest.raises(ValueError, match='in_channels counts xyz'):
        small_ppt(in_channels=2)


def test_state_dict_layout_is_the_documented_one() -> None:
    model = MODELS.build(dict(type='PointPatchTransformer'))  # the paper's size
    sd = model.state_dict()
    bn = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
    head = [f'patch_embed.{mlp}.{i}.{p}' for mlp in ('local_mlp', 'fuse_mlp')
            for i, params in ((0, ('weight', 'bias')), (1, bn), (3, ('weight', 'bias')))
            for p in params]
    head += ['pos_embed.0.weight', 'pos_embed.0.bias', 'pos_embed.2.weight', 'pos_embed.2.bias']
    want = head + [k for i in range(12) for k in block_keys(i)] + ['norm.weight', 'norm.bias']
    assert list(sd) == want
    shapes = {'patch_embed.local_mlp.0.weight': (128, 3), 'patch_embed.fuse_mlp.0.weight':
              (512, 512), 'patch_embed.fuse_mlp.3.weight': (384, 512),
              'pos_embed.0.weight': (128, 3), 'pos_embed.2.weight': (384, 128),
              'blocks.11.attn.qkv.weight': (1152, 384), 'blocks.0.attn.proj.weight': (384, 384),
              'blocks.0.mlp.0.weight': (1536, 384), 'blocks.0.mlp.3.weight': (384, 1536),
              'norm.weight': (384,)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    # Point-MAE's encoder size (22.1M with its 3-layer positional MLP; ours 21.8M).
    assert 21.5e6 < sum(p.numel() for p in model.parameters()) < 22.5e6
    cls = MODELS.build(dict(type='PointPatchTransformer', use_cls_token=True, depth=1))
    extra = set(cls.state_dict()) - set(MODELS.build(
        dict(type='PointPatchTransformer', depth=1)).state_dict())
    assert extra == {'cls_token', 'cls_pos'}
    assert cls.cls_token.shape == cls.cls_pos.shape == (1, 1, 384)


def test_scene_and_object_configs_share_one_weight_layout() -> None:
    # The scene recipe only changes the patching, so its export loads into 64 x 32 models.
    obj = Config.fromfile(str(BASE_MODEL_CFG)).model
    scene = Config.fromfile(str(SCENE_CFG)).model
    assert (scene.backbone.num_groups, obj.backbone.num_groups) == (512, 64)
    sd_obj = MODELS.build(obj.backbone).state_dict()
    sd_scene = MODELS.build(scene.backbone).state_dict()
    assert {k: v.shape for k, v in sd_obj.items()} == {k: v.shape for k, v in sd_scene.items()}
    for cfg in (obj, scene):
        assert cfg.concept_extractor.type == 'InterleavedConceptExtractor'
        assert cfg.concept_extractor.num_layers == cfg.backbone.depth == 12
        assert cfg.token_adapter.out_channels == cfg.backbone.embed_dims == 384
    demo = Config.fromfile(str(DEMO_CFG)).model
    assert demo.concept_extractor.num_layers == demo.backbone.depth == 12


def test_deterministic() -> None:
    points = clouds(b=2, n=256)
    torch.manual_seed(3)
    a = small_ppt(depth=3)
    torch.manual_seed(3)
    b = small_ppt(depth=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    a.eval()
    first, second = a(points), a(points)
    for key in ('xyz', 'features', 'center_idx', 'patch_idx'):
        assert torch.equal(first[key], second[key]), key
    # Training mode (drop path draws): same seed, same result.
    b.train()
    torch.manual_seed(7)
    t1 = b(points)['features']
    torch.manual_seed(7)
    t2 = b(points)['features']
    assert torch.equal(t1, t2)
    torch.manual_seed(8)
    assert not torch.equal(t1, b(points)['features'])  # drop path is active in training


# -- inside the distiller ---------------------------------------------------------------------
def tiny_distiller_cfg(depth: int = 12) -> dict:
    """The project's point-patch distiller config, shrunk for CPU."""
    cfg = Config.fromfile(str(BASE_MODEL_CFG)).model.to_dict()
    cfg['backbone'].update(depth=depth, **SMALL)
    cfg['token_adapter'].update(out_channels=SMALL['embed_dims'])
    cfg['concept_extractor'].update(num_layers=depth, num_concepts=4, embed_dims=32,
                                    num_heads=4)
    cfg['teacher'].update(arch_overrides=TINY_CLIP)
    cfg['allow_random_teacher'] = True
    return cfg


def build_distiller(depth: int = 12):
    """A small ConceptDistiller around the point-patch transformer (random tiny teacher)."""
    with pytest.warns(UserWarning, match='RANDOMLY'):
        return MODELS.build(tiny_distiller_cfg(depth))


def paired_batch(b: int = 3, n: int = 256, seed: int = 0) -> dict:
    """A batch as the paired dataset packs it: points (N, 4) xyz + height, uint8 images."""
    g = torch.Generator().manual_seed(seed)
    points = [p for p in clouds(b, n, 3, seed)]
    points = [torch.cat([p, p[:, 2:] - p[:, 2:].min()], dim=1) for p in points]
    imgs = [torch.randint(0, 256, (3, 24, 32), generator=g, dtype=torch.uint8)
            for _ in range(b)]
    samples = [Det3DDataSample(metainfo=dict(frame_id=f'f{i}')) for i in range(b)]
    return dict(inputs=dict(points=points, img=imgs), data_samples=samples)


def test_adapter_gives_one_token_set_per_block() -> None:
    torch.manual_seed(0)
    model = build_distiller(depth=4).eval()
    batch = model.data_preprocessor(paired_batch(), False)
    tokens = model.token_adapter(model.backbone, batch['inputs'], batch['data_samples'])
    assert isinstance(tokens, LayeredPointTokens) and len(tokens.layers) == 4
    out = model.backbone(torch.stack(batch['inputs']['points'])[..., :3])
    assert torch.equal(tokens.feats, out['features'])
    for layer, want in zip(tokens.layers, out['tokens']):
        assert isinstance(layer, PointTokens) and layer.mask is None
        assert torch.equal(layer.xyz, out['xyz']) and torch.equal(layer.feats, want)
    # A subset of blocks, e.g. for a 2-layer extractor.
    sub = MODELS.build(dict(type='PointPatchTokenAdapter', out_channels=32, use_dims=[0, 1, 2],
                            layer_indices=[1, -1]))
    picked = sub(model.backbone, batch['inputs']).layers
    assert len(picked) == 2
    assert all(torch.equal(p.feats, out['tokens'][i]) for p, i in zip(picked, (1, 3)))
    with pytest.raises(ValueError, match='layer_indices'):
        MODELS.build(dict(type='PointPatchTokenAdapter', out_channels=32, use_dims=[0, 1, 2],
                          layer_indices=[4]))(model.backbone, batch['inputs'])
    with pytest.raises(ValueError, match='out_channels=64'):
        MODELS.build(dict(type='PointPatchTokenAdapter', out_channels=64,
                          use_dims=[0, 1, 2]))(model.backbone, batch['inputs'])


def test_each_concept_layer_reads_its_own_block() -> None:
    torch.manual_seed(0)
    model = build_distiller(depth=3).eval()
    batch = model.data_preprocessor(paired_batch(), False)
    tokens = model.token_adapter(model.backbone, batch['inputs'], batch['data_samples'])
    base = model.concept_extractor(tokens)
    for i in range(3):
        layers = list(tokens.layers)
        layers[i] = PointTokens(layers[i].xyz, layers[i].feats + 1.0, None)
        changed = LayeredPointTokens(*tokens)
        changed.layers = layers
        assert not torch.allclose(model.concept_extractor(changed), base), i
    # Not the final tokens alone: changing them with the layers kept changes nothing.
    same = LayeredPointTokens(tokens.xyz, tokens.feats + 1.0, None)
    same.layers = tokens.layers
    assert torch.equal(model.concept_extractor(same), base)


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_point_stream_is_bit_identical_without_the_concept_stream(train: bool) -> None:
    torch.manual_seed(0)
    model = build_distiller(depth=12)
    model.train(train)
    # The backbone alone: the same config and weights, no concept stream, no teacher.
    alone = MODELS.build(tiny_distiller_cfg(12)['backbone'])
    alone.load_state_dict(copy.deepcopy(model.backbone.state_dict()))
    alone.train(train)
    seen = {}
    model.backbone.register_forward_hook(lambda m, args, out: seen.setdefault('out', out))
    batch = model.data_preprocessor(paired_batch(), True)
    torch.manual_seed(11)  # drop path draws the same masks in both runs
    losses = model.loss(batch['inputs'], batch['data_samples'])
    assert torch.isfinite(losses['loss_contrastive'])
    torch.manual_seed(11)
    ref = alone(torch.stack(batch['inputs']['points'])[..., :3])
    inside = seen['out']
    for key in ('xyz', 'features', 'center_idx', 'patch_idx'):
        assert torch.equal(inside[key], ref[key]), key
    assert len(inside['tokens']) == len(ref['tokens']) == 12
    for i, (a, b) in enumerate(zip(inside['tokens'], ref['tokens'])):
        assert torch.equal(a, b), f'block {i}'


def test_every_block_gets_a_gradient_from_the_concept_loss() -> None:
    torch.manual_seed(0)
    model = build_distiller(depth=12).train()
    batch = model.data_preprocessor(paired_batch(b=4), True)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()

    def grad_norm(module: torch.nn.Module) -> float:
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        return sum(float(g.norm()) for g in grads)

    backbone = model.backbone
    assert grad_norm(backbone.patch_embed) > 0 and grad_norm(backbone.pos_embed) > 0
    for i, block in enumerate(backbone.blocks):
        for part in (block.attn.qkv, block.attn.proj, block.mlp, block.norm1, block.norm2):
            assert grad_norm(part) > 0, f'block {i}: {part}'
    for i, layer in enumerate(model.concept_extractor.layers):
        assert grad_norm(layer.cross_attn) > 0, f'concept layer {i}'


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = small_ppt(depth=4, in_channels=4).eval()
    points = clouds(b=2, n=2048, c=4, seed=5)
    cpu = model(points)
    gpu = copy.deepcopy(model).cuda()(points.cuda())
    # mmcv's CUDA FPS / kNN kernels and the CPU kernels pick the same patches.
    assert torch.equal(gpu['center_idx'].cpu(), cpu['center_idx'])
    assert torch.equal(gpu['patch_idx'].cpu().sort(-1).values, cpu['patch_idx'].sort(-1).values)
    for a, b in zip(gpu['tokens'], cpu['tokens']):
        assert torch.allclose(a.cpu(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_scannet_recipe_pretraining_step_on_cuda() -> None:
    """One step of the ScanNet-frames recipe at full size on CUDA: the 12 x 384 student with a
    concept layer per block, the random ViT-B-16 teacher, the recipe's optimizer."""
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(str(SCENE_CFG))
    cfg.model.allow_random_teacher = True  # no CLIP weights on the test machines
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='RANDOMLY'):
        model = MODELS.build(cfg.model)
    model = model.cuda().train()
    assert model.backbone.depth == len(model.concept_extractor.layers) == 12
    assert model.backbone.embed_dims == 384
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # Two frames of 8,192 points (the recipe's FrustumPointPairing) and 240 x 320 RGB images.
    g = torch.Generator().manual_seed(0)
    batch = paired_batch(b=2, n=8192, seed=0)
    batch['inputs']['img'] = [torch.randint(0, 256, (3, 240, 320), generator=g,
                                            dtype=torch.uint8) for _ in range(2)]
    before = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    data = model.data_preprocessor(batch, True)
    assert data['inputs']['points'][0].is_cuda
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss.is_cuda
    assert all(torch.isfinite(v) for v in log_vars.values())
    optim.backward(loss)
    for i, block in enumerate(model.backbone.blocks):
        grads = [p.grad for p in block.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), f'block {i}'
        assert sum(float(g.abs().sum()) for g in grads) > 0, f'block {i}'
    optim.step()
    after = model.backbone.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before
               if k.startswith('blocks.') and k.endswith('.weight'))
