"""Pre-training MinkUNetBackbone with ConceptDistiller; the export loads into both seg configs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config

from concept_distill.models.distill import MinkUNetTokenAdapter, PointTokens
from concept_distill.ops import voxelize_minkunet

PRETRAIN = (REPO_ROOT / 'configs' / 'pretrain' /
            'minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames.py')
SEG_CONFIGS = [
    REPO_ROOT / 'configs' / 'minkunet' /
    'minkunet34_w32_spconv_concept-distill_8xb2-cosine-200e_scannet-seg.py',
    REPO_ROOT / 'configs' / 'minkunet' /
    'minkunet34_w32_spconv_concept-distill_8xb2-cosine-600e_s3dis-seg.py',
]


# spconv's CPU path runs on one thread in these tests (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _small_backbone() -> torch.nn.Module:
    return MODELS.build(dict(
        type='MinkUNetBackbone', in_channels=6, base_channels=8, encoder_channels=[8, 16, 16, 16],
        encoder_blocks=[1, 1, 1, 1], decoder_channels=[16, 16, 16, 16],
        decoder_blocks=[1, 1, 1, 1], sparseconv_backend='spconv'))


def _clouds(sizes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.cat([torch.rand(n, 3, generator=g) * 2, torch.rand(n, 3, generator=g)], 1)
            for n in sizes]


def test_adapter_maps_voxel_features_to_points_with_a_mask() -> None:
    backbone = _small_backbone()
    adapter = MinkUNetTokenAdapter(out_channels=16, voxel_size=0.1).eval()
    points = _clouds((300, 120))
    samples = [Det3DDataSample(), Det3DDataSample()]
    tokens = adapter(backbone, dict(points=points), samples)
    assert isinstance(tokens, PointTokens)
    assert tokens.feats.shape == (2, 300, 16) and tokens.mask.dtype == torch.bool
    assert tokens.mask.sum(1).tolist() == [300, 120]
    assert not tokens.feats[1, 120:].any()  # padding
    assert torch.equal(tokens.xyz[1, :120], points[1][:, :3])
    # points of one voxel share its feature; points of different voxels (almost) never do
    p2v = samples[0].point2voxel_map
    same = p2v[:, None] == p2v[None, :]
    feats = tokens.feats[0]
    equal = (feats[:, None] == feats[None, :]).all(-1)
    assert bool(equal[same].all()) and same.sum() > 300  # some voxels hold several points
    assert float(equal[~same].float().mean()) < 0.01
    # gradients reach the backbone through the read-out
    feats.square().sum().backward()
    assert backbone.conv_input[0][0].weight.grad.abs().sum() > 0


def test_adapter_uses_preprocessor_voxels_and_caps_tokens() -> None:
    backbone = _small_backbone().eval()
    points = _clouds((400, 50))
    samples = [Det3DDataSample(), Det3DDataSample()]
    voxels = voxelize_minkunet(points, samples, voxel_size=[0.1] * 3)
    adapter = MinkUNetTokenAdapter(out_channels=16, voxel_size=None, max_tokens=64).eval()
    with torch.no_grad():
        capped = adapter(backbone, dict(points=points, voxels=voxels), samples)
        full = MinkUNetTokenAdapter(out_channels=16, voxel_size=None).eval()(
            backbone, dict(points=points, voxels=voxels), samples)
    assert capped.mask.sum(1).tolist() == [64, 50]
    # eval keeps a fixed stride of the points, so the capped tokens are a subset of the full
    idx = torch.linspace(0, 399, 64).round().long()
    assert torch.equal(capped.xyz[0], full.xyz[0, idx])
    assert torch.allclose(capped.feats[0], full.feats[0, idx])
    with pytest.raises(ValueError, match='voxel_size'):
        adapter(backbone, dict(points=points), samples)


def test_pretrain_backbone_is_the_segmentation_backbone() -> None:
    pre = Config.fromfile(str(PRETRAIN)).model
    assert pre.type == 'ConceptDistiller'
    assert pre.token_adapter.type == 'MinkUNetTokenAdapter'
    for path in SEG_CONFIGS:
        seg = Config.fromfile(str(path))
        seg_backbone = seg.model.backbone.to_dict()
        seg_backbone.pop('init_cfg')
        assert pre.backbone.to_dict() == seg_backbone, path.name
        assert pre.token_adapter.voxel_size == seg.model.data_preprocessor.voxel_layer.voxel_size[0]
        assert pre.token_adapter.out_channels == seg.model.decode_head.channels
        assert any(h['type'] == 'PretrainedBackboneCheckHook' for h in seg.custom_hooks)


@pytest.mark.slow
def test_pretrain_then_load_into_both_segmentation_configs(tmp_path: Path,
                                                           synthetic_root) -> None:
    """Two pre-training iterations on a synthetic scene write a backbone checkpoint that loads
    into the ScanNet and S3DIS configs with zero missing / unexpected keys."""
    from concept_distill.checkpoint.backbone_checkpoint import (
        check_backbone_checkpoint,
        extract_backbone_state,
    )
    from concept_distill.engine import ConceptDistillRunner

    data_root = synthetic_root(num_scenes=1, seed=0, points_per_scene=6000, num_frames=2)
    cfg = Config.fromfile(str(PRETRAIN))
    cfg.model.allow_random_teacher = True  # no CLIP weights in tests
    cfg.work_dir = str(tmp_path / 'pretrain')
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data_root), frame_stride=1)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    runner = ConceptDistillRunner.from_cfg(cfg)
    start = {k: v.clone() for k, v in runner.model.backbone.state_dict().items()}
    runner.train()
    exported = Path(cfg.work_dir) / 'backbone_latest.pth'
    assert exported.is_file()
    ckpt = torch.load(exported, map_location='cpu', weights_only=True)  # tensors + plain meta
    state = extract_backbone_state(ckpt)
    trained = runner.model.backbone.state_dict()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    assert any(not torch.equal(start[k], trained[k]) for k in trained
               if trained[k].is_floating_point())  # pre-training changed the backbone

    for path in SEG_CONFIGS:
        seg = Config.fromfile(str(path))
        seg.model.backbone.init_cfg.checkpoint = str(exported)
        report = check_backbone_checkpoint(str(exported), seg.model)
        assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
        model = MODELS.build(seg.model)
        model.init_weights()
        loaded = model.backbone.state_dict()
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], state[k]) for k in state), path.name
