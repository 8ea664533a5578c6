"""3DETR with the pre-trained point-patch transformer as its encoder (the 3DETR-PPT config).

A small PPT pre-training distiller (the ScanNet-frames recipe, shrunk through config
overrides) takes one step and is exported with the project's export code; the 3DETR-PPT
config at the same small size loads the export through its init_cfg (0 missing, 0 unexpected
keys, tensors equal), its guard refuses an export of another shape, and the detector trains
a step on a synthetic scene with gradients reaching every encoder block.
"""
from __future__ import annotations

import ast
import copy
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT
from distill_builders import optim_wrapper_for, paired_batch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

from concept_distill.checkpoint import BackboneCheckpointError, check_backbone_checkpoint
from concept_distill.checkpoint.export import export_backbone
from concept_distill.hooks import PretrainedBackboneCheckHook

PPT_PRETRAIN = (REPO_ROOT / 'configs' / 'pretrain'
                / 'ppt-12x384_concept-distill_8xb8-100e_scannet-frames.py')
PPT_3DETR = (REPO_ROOT / 'configs' / '3detr'
             / '3detr-ppt-12x384_concept-distill_1xb8-1080e_scannet-3d.py')
THREEDETR_PKG = (REPO_ROOT / 'projects' / 'ConceptDistill' / 'concept_distill' / 'models'
                 / 'threedetr')
# Narrow and shallow; the same components and key names as the configs' 12 x 384.
SMALL = dict(depth=4, embed_dims=32, num_heads=4, patch_hidden_channels=(16, 32),
             patch_fuse_channels=64, pos_hidden=16)
TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32,
                                 patch_size=16),
                 text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))
NUM_POINTS = 2048  # points per scene here (the config samples 40000)
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def small_pretrain_cfg() -> Config:
    """The PPT ScanNet-frames pre-training config at the small size, random tiny teacher."""
    cfg = Config.fromfile(str(PPT_PRETRAIN))
    cfg.model.allow_random_teacher = True  # no CLIP weights in tests
    cfg.model.backbone.update(num_groups=32, group_size=16, **SMALL)
    cfg.model.token_adapter.out_channels = SMALL['embed_dims']
    cfg.model.concept_extractor.update(num_layers=SMALL['depth'], num_concepts=4,
                                       embed_dims=32, num_heads=4)
    cfg.model.teacher.arch_overrides = TINY_CLIP
    return cfg


def small_detector_cfg(checkpoint: str | Path) -> Config:
    """The 3DETR-PPT config at the same small size, loading ``checkpoint``."""
    cfg = Config.fromfile(str(PPT_3DETR))
    cfg.model.backbone.update(num_groups=64, group_size=16, **SMALL)
    cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    cfg.model.bbox_head.update(in_channels=SMALL['embed_dims'], embed_dims=32, num_queries=16,
                               decoder=dict(num_layers=2, num_heads=4, ffn_dims=32))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    return cfg


def fake_runner(model) -> SimpleNamespace:
    """What PretrainedBackboneCheckHook reads of a runner."""
    return SimpleNamespace(model=model, logger=logging.getLogger('ppt-3detr-test'),
                           _load_from=None, _resume=False)


def test_config_encoder_is_the_pretraining_backbone() -> None:
    det = Config.fromfile(str(PPT_3DETR))
    pre = Config.fromfile(str(PPT_PRETRAIN))
    assert det.model.type == 'ThreeDETR'
    assert det.model.backbone.type == 'ThreeDETRPatchTransformerEncoder'
    init = det.model.backbone.init_cfg
    assert init.type == 'Pretrained' and init.prefix == 'backbone.'
    assert init.checkpoint.startswith('work_dirs/ppt-12x384_concept-distill_8xb8-100e_')
    assert [h.type for h in det.custom_hooks] == ['PretrainedBackboneCheckHook']
    assert det.model.bbox_head.in_channels == det.model.backbone.embed_dims == 384
    # 3DETR's pipeline gives xyz only, as the pre-training backbone reads.
    assert det.model.backbone.in_channels == pre.model.backbone.in_channels == 3
    enc_cfg = {k: v for k, v in det.model.backbone.items() if k != 'init_cfg'}
    enc = MODELS.build(enc_cfg)
    ppt = MODELS.build(pre.model.backbone)
    assert {k: v.shape for k, v in enc.state_dict().items()} == \
        {k: v.shape for k, v in ppt.state_dict().items()}
    # The whole detector builds at full size (no init: the export does not exist here).
    model_cfg = copy.deepcopy(det.model)
    model_cfg.backbone.pop('init_cfg')
    detector = MODELS.build(model_cfg)
    assert detector.bbox_head.encoder_proj[0].in_channels == 384


def test_threedetr_package_does_not_import_the_method() -> None:
    # Downstream models never depend on the distillation code (only on models.backbones).
    for path in sorted(THREEDETR_PKG.glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith('concept_distill.models.distill'), (path.name, name)


def test_encoder_gives_the_threedetr_encoder_contract() -> None:
    torch.manual_seed(0)
    enc = MODELS.build(dict(type='ThreeDETRPatchTransformerEncoder', num_groups=16,
                            group_size=8, **SMALL)).eval()
    points = torch.rand(2, 256, 3) * torch.tensor([4.0, 4.0, 2.5])
    out = enc(points)
    ppt = MODELS.build(dict(type='PointPatchTransformer', num_groups=16, group_size=8, **SMALL))
    ppt.load_state_dict(enc.state_dict())  # strict: the very same keys
    ref = ppt.eval()(points)
    assert out['xyz'].shape == (2, 16, 3) and out['features'].shape == (2, 16, 32)
    assert torch.equal(out['xyz'], ref['xyz']) and torch.equal(out['features'], ref['features'])
    # The patch centres are input points; indices say which.
    assert torch.equal(points.gather(1, out['indices'][..., None].expand(-1, -1, 3)),
                       out['xyz'])
    assert len(out['layer_features']) == len(out['layer_xyz']) == SMALL['depth']
    assert torch.equal(out['layer_features'][-1], out['features'])


@pytest.fixture(scope='module')
def export(tmp_path_factory) -> Path:
    """One pre-training step of the small PPT distiller, exported by export_backbone."""
    tmp = tmp_path_factory.mktemp('ppt_export')
    cfg = small_pretrain_cfg()
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='RANDOMLY'):
        distiller = MODELS.build(cfg.model)
    distiller.train()
    log = distiller.train_step(paired_batch(b=4, n=512), optim_wrapper_for(distiller))
    assert torch.isfinite(log['loss'])
    pretrain_cfg = tmp / 'ppt_pretrain_small.py'
    cfg.dump(str(pretrain_cfg))
    ckpt = tmp / 'iter_1.pth'
    torch.save(dict(state_dict=distiller.state_dict(), meta=dict(iter=1, epoch=0)), ckpt)
    det_cfg = tmp / '3detr_ppt_small.py'
    small_detector_cfg(tmp / 'unused.pth').dump(str(det_cfg))
    out = tmp / 'backbone_iter_1.pth'
    result = export_backbone(ckpt, out, config=str(pretrain_cfg), target_config=str(det_cfg))
    assert result.num_tensors == len(distiller.backbone.state_dict())
    assert result.checked_against == str(det_cfg)
    return out


def test_export_loads_into_3detr_ppt_with_zero_missing_keys(export: Path) -> None:
    saved = torch.load(export, weights_only=True)
    assert saved['meta']['backbone_type'] == 'PointPatchTransformer'
    state = {k[len('backbone.'):]: v for k, v in saved['state_dict'].items()}
    cfg = small_detector_cfg(export)
    torch.manual_seed(1)
    detector = MODELS.build(cfg.model)
    own = detector.backbone.state_dict()
    assert set(own) == set(state)
    assert any(not torch.equal(own[k], v) for k, v in state.items() if v.is_floating_point())
    report = check_backbone_checkpoint(str(export), detector.backbone)
    assert (report.missing, report.unexpected, report.shape_mismatch) == ([], [], [])
    # The guard of the config, around mmengine's Pretrained init as the runner orders them.
    (hook_cfg,) = cfg.custom_hooks
    hook = PretrainedBackboneCheckHook(**{k: v for k, v in hook_cfg.items() if k != 'type'})
    hook.before_run(fake_runner(detector))
    detector.init_weights()
    hook.before_train(fake_runner(detector))
    loaded = detector.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items()), 'export not loaded'


def test_guard_refuses_an_export_of_another_shape(tmp_path) -> None:
    other = MODELS.build(dict(type='PointPatchTransformer', **dict(SMALL, depth=3)))
    path = tmp_path / 'backbone_depth3.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in other.state_dict().items()}),
               path)
    detector = MODELS.build(small_detector_cfg(path).model)
    with pytest.raises(BackboneCheckpointError, match=r'missing keys \[blocks\.3\.'):
        PretrainedBackboneCheckHook().before_run(fake_runner(detector))


def test_3detr_ppt_trains_a_step_from_the_export(export: Path, synthetic_root) -> None:
    data_root = synthetic_root(num_scenes=1, seed=0, points_per_scene=6000, num_frames=2,
                               image_size=(60, 80))
    cfg = small_detector_cfg(export)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if ds_cfg.type == 'RepeatDataset':
        ds_cfg = ds_cfg.dataset
    ds_cfg.update(data_root=str(data_root), ann_file='scannet_infos_train.pkl')
    for t in ds_cfg.pipeline:
        if t['type'] == 'PointSample':
            t['num_points'] = NUM_POINTS
    dataset = DATASETS.build(ds_cfg)
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    detector.train()
    items = [dataset[0], dataset[0]]
    assert items[0]['inputs']['points'].shape == (NUM_POINTS, 3)
    assert len(items[0]['data_samples'].gt_instances_3d) > 0
    data = detector.data_preprocessor(pseudo_collate(items), True)
    losses = detector(**data, mode='loss')
    loss, log_vars = detector.parse_losses(losses)
    assert torch.isfinite(loss) and log_vars['loss_giou'] > 0
    loss.backward()
    enc = detector.backbone
    for name, part in [('patch_embed', enc.patch_embed), ('pos_embed', enc.pos_embed),
                       ('norm', enc.norm)] + [(f'blocks.{i}', b) for i, b in
                                              enumerate(enc.blocks)]:
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    optim = build_optim_wrapper(detector, cfg.optim_wrapper)
    optim.step()
    after = enc.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith('blocks.'))
