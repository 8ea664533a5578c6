"""3DETR as an mmdet3d detector on CPU: real ScanNet / SUN RGB-D samples through the configs'
pipelines, a training step, predict + IndoorMetric, the configs' settings, the masked encoder,
and the encoder pre-trained by concept distillation loading into the detector."""
import copy
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, METRICS, MODELS
from mmdet3d.structures import DepthInstance3DBoxes
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

from concept_distill.models.distill import PointTokens, ThreeDETRTokenAdapter
from concept_distill.models.threedetr.transformer_layers import PreNormEncoderLayer

CFG_DIR = REPO_ROOT / 'configs' / '3detr'
SCANNET = CFG_DIR / '3detr_1xb8-1080e_scannet-3d.py'
SUNRGBD = CFG_DIR / '3detr_1xb8-1080e_sunrgbd-3d.py'
FINETUNE = CFG_DIR / '3detr_concept-distill_1xb8-1080e_scannet-3d.py'
PRETRAIN = (REPO_ROOT / 'configs' / 'pretrain'
            / '3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py')
NUM_POINTS = 4096  # points per cloud in these tests (the configs use 40000 / 20000)


def shrink(model_cfg, width: int = 64, queries: int = 64) -> None:
    """Same components, fewer sampled points and channels (parameter names unchanged)."""
    model_cfg.backbone.update(num_points=256, num_samples=32, sa_channels=(32, 64),
                              embed_dims=width, ffn_dims=width)
    if 'bbox_head' in model_cfg:
        model_cfg.bbox_head.update(in_channels=width, embed_dims=width, num_queries=queries,
                                   decoder=dict(num_layers=8, num_heads=4, ffn_dims=width,
                                                dropout=0.1))


def set_points(pipeline, num_points: int) -> None:
    """Set every PointSample (also inside test-time augmentation) to `num_points`."""
    for t in pipeline:
        if t['type'] == 'PointSample':
            t['num_points'] = num_points
        for inner in t.get('transforms', []):
            if inner['type'] == 'PointSample':
                inner['num_points'] = num_points


def build_dataset(cfg: Config, split: str, data_root: Path, ann_file: str, **extra):
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    ds_cfg = copy.deepcopy(loader.dataset)
    if ds_cfg.type == 'RepeatDataset':
        ds_cfg = ds_cfg.dataset
    ds_cfg.update(data_root=str(data_root), ann_file=ann_file, **extra)
    set_points(ds_cfg.pipeline, NUM_POINTS)
    return DATASETS.build(ds_cfg)


@pytest.fixture(scope='module')
def scannet_root(tmp_path_factory, fixtures_root) -> Path:
    """The real scene0000_00 (40,684 points) with the real info file of that scene (27 boxes)."""
    root = tmp_path_factory.mktemp('scannet')
    (root / 'points').mkdir()
    os.symlink(fixtures_root / 'scannet' / 'scene0000_00.bin', root / 'points' / 'scene0000_00.bin')
    infos = pickle.loads((fixtures_root / 'scannet_tiny' / 'scannet_infos.pkl').read_bytes())
    assert infos['data_list'][0]['lidar_points']['lidar_path'] == 'scene0000_00.bin'
    (root / 'scannet_infos.pkl').write_bytes(pickle.dumps(infos))
    return root


def _changed(before: dict, module: torch.nn.Module, prefix: str) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items()
               if k.startswith(prefix) and v.is_floating_point())


def test_train_step_on_real_scannet_scene(scannet_root):
    cfg = Config.fromfile(str(SCANNET))
    dataset = build_dataset(cfg, 'train', scannet_root, 'scannet_infos.pkl')
    torch.manual_seed(0)
    np.random.seed(0)
    items = [dataset[0], dataset[0]]
    points = items[0]['inputs']['points']
    assert points.shape == (NUM_POINTS, 3)  # xyz only, no height channel
    gt = items[0]['data_samples'].gt_instances_3d
    assert 1 <= len(gt) <= 27 and isinstance(gt.bboxes_3d, DepthInstance3DBoxes)

    shrink(cfg.model)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert not hasattr(model.bbox_head, 'heading_cls_head')  # ScanNet: no heading
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(optim.optimizer, torch.optim.AdamW)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    log = model.train_step(pseudo_collate(items), optim)
    terms = {'loss_cls', 'loss_center', 'loss_size', 'loss_giou'}
    expected = terms | {f'd{i}.{t}' for i in range(7) for t in terms}
    assert expected <= set(log) and not any('heading' in k for k in log)
    assert all(torch.isfinite(v) for v in log.values())
    assert log['loss_cls'] > 0 and log['loss_giou'] > 0
    for prefix in ('backbone.pre_encoder.', 'backbone.layers.2.', 'bbox_head.decoder.layers.7.',
                   'bbox_head.cls_head.', 'bbox_head.center_head.', 'bbox_head.size_head.',
                   'bbox_head.encoder_proj.', 'bbox_head.query_proj.'):
        assert _changed(before, model, prefix), prefix
    # the Fourier projection is fixed state, not trained
    assert torch.equal(before['bbox_head.pos_embed.gauss_b'],
                       model.state_dict()['bbox_head.pos_embed.gauss_b'])


def test_predict_and_indoor_metric_on_real_scannet_scene(scannet_root):
    cfg = Config.fromfile(str(SCANNET))
    dataset = build_dataset(cfg, 'test', scannet_root, 'scannet_infos.pkl')
    shrink(cfg.model)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    batch = pseudo_collate([dataset[0]])
    with torch.no_grad():
        out = model.test_step(batch)[0]
        raw = model(**model.data_preprocessor(batch, False), mode='tensor')
    pred = out.pred_instances_3d
    assert isinstance(pred.bboxes_3d, DepthInstance3DBoxes) and not pred.bboxes_3d.with_yaw
    # NMS-free: each query above the objectness threshold once per class
    objectness = 1 - raw[-1]['cls_logits'][0].softmax(-1)[:, -1]
    kept = int((objectness > cfg.model.test_cfg.score_thr).sum())
    assert len(pred.bboxes_3d) == 18 * kept == len(pred.scores_3d) == len(pred.labels_3d)
    assert set(pred.labels_3d.tolist()) <= set(range(18))
    assert (pred.scores_3d >= 0).all() and (pred.scores_3d <= 1).all()
    assert len(raw) == 8  # one prediction per decoder layer
    # boxes are centred within 0.5 m of their (encoder-point) queries inside the scene
    xyz = batch['inputs']['points'][0][:, :3]
    centres = pred.bboxes_3d.gravity_center
    assert (centres >= xyz.min(0)[0] - 0.5).all() and (centres <= xyz.max(0)[0] + 0.5).all()

    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dataset.metainfo
    metric.process(batch, [out.to_dict()])
    result = metric.compute_metrics(metric.results)
    present = {dataset.metainfo['classes'][i] for i in out.eval_ann_info['gt_labels_3d']}
    aps = [result[f'{c}_AP_0.25'] for c in present]
    assert len(present) >= 10 and all(0.0 <= a <= 1.0 for a in aps)

    # the reference's evaluation NMS is one option away
    model.bbox_head.test_cfg['nms_thr'] = 0.25
    with torch.no_grad():
        nms = model.test_step(pseudo_collate([dataset[0]]))[0].pred_instances_3d
    assert 0 < len(nms.bboxes_3d) < len(pred.bboxes_3d)


def test_sunrgbd_heading_bins_train_and_predict(fixtures_root):
    cfg = Config.fromfile(str(SUNRGBD))
    extra = dict(data_prefix=dict(pts='', img=''))
    root = fixtures_root / 'sunrgbd'
    train = build_dataset(cfg, 'train', root, 'sunrgbd_000017_infos.pkl', **extra)
    test = build_dataset(cfg, 'test', root, 'sunrgbd_000017_infos.pkl', **extra)
    shrink(cfg.model, queries=32)
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    assert head.heading_coder.num_bins == 12 and hasattr(head, 'heading_res_head')
    assert 'loss_giou' not in head.loss_module(*_dummy_layer(head))  # SUN RGB-D: weight 0
    sample = train[0]
    assert sample['data_samples'].gt_instances_3d.bboxes_3d.with_yaw
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    log = model.train_step(pseudo_collate([sample]), optim)
    assert {'loss_heading_cls', 'loss_heading_reg', 'd6.loss_heading_cls'} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    assert _changed(before, model, 'bbox_head.heading_cls_head.')
    assert _changed(before, model, 'bbox_head.heading_res_head.')
    model.eval()
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([test[0]]))[0].pred_instances_3d
    assert pred.bboxes_3d.with_yaw and len(pred.bboxes_3d) % 10 == 0
    yaw = pred.bboxes_3d.yaw
    assert (yaw > -math.pi - 1e-5).all() and (yaw <= math.pi + 1e-5).all()


def _dummy_layer(head):
    """One layer's predictions and targets with a single matched box (shapes only)."""
    preds = dict(cls_logits=torch.zeros(1, 2, head.num_classes + 1),
                 center=torch.zeros(1, 2, 3), center_norm=torch.zeros(1, 2, 3),
                 size=torch.ones(1, 2, 3), size_norm=torch.ones(1, 2, 3) / 4,
                 yaw=torch.zeros(1, 2), heading_logits=torch.zeros(1, 2, 12),
                 heading_residual=torch.zeros(1, 2, 12))
    targets = dict(centers=torch.zeros(1, 1, 3), centers_norm=torch.zeros(1, 1, 3),
                   sizes=torch.ones(1, 1, 3), sizes_norm=torch.ones(1, 1, 3) / 4,
                   labels=torch.zeros(1, 1, dtype=torch.long), yaw=torch.zeros(1, 1),
                   heading_cls=torch.zeros(1, 1, dtype=torch.long),
                   heading_res=torch.zeros(1, 1), num_gt=torch.tensor([1]), num_boxes=1.0)
    return preds, targets


def test_configs_carry_the_papers_settings():
    scannet, sun = Config.fromfile(str(SCANNET)), Config.fromfile(str(SUNRGBD))
    short = Config.fromfile(str(CFG_DIR / '3detr_1xb8-90e_scannet-3d.py'))
    masked = Config.fromfile(str(CFG_DIR / '3detr-m_1xb8-1080e_scannet-3d.py'))
    for cfg, classes, queries, bins, lr in ((scannet, 18, 256, 1, 5e-4), (sun, 10, 128, 12, 7e-4)):
        head, enc = cfg.model.bbox_head, cfg.model.backbone
        assert (head.num_classes, head.num_queries, head.num_heading_bins) == (classes, queries,
                                                                             bins)
        assert len(cfg.train_dataloader.dataset.dataset.metainfo['classes']) == classes
        assert (enc.embed_dims, enc.num_layers, enc.num_points) == (256, 3, 2048)
        assert head.decoder.num_layers == 8 and head.embed_dims == 256
        opt = cfg.optim_wrapper
        assert (opt.optimizer.type, opt.optimizer.lr, opt.optimizer.weight_decay) == ('AdamW',
                                                                                     lr, 0.1)
        assert opt.clip_grad.max_norm == 0.1
        assert cfg.train_cfg.max_epochs == 1080 and cfg.train_dataloader.batch_size == 8
        assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
        assert cfg.param_scheduler[1]['eta_min'] == 1e-6 and cfg.param_scheduler[0]['end'] == 9
        assert cfg.train_dataloader.dataset.times == 1
        assert cfg.model.test_cfg.nms_thr is None  # NMS-free
        points_cols = [t for t in cfg.train_dataloader.dataset.dataset.pipeline
                       if t['type'] == 'LoadPointsFromFile'][0]
        assert points_cols['use_dim'] == [0, 1, 2] and not points_cols['shift_height']
    assert scannet.model.bbox_head.loss.matcher.giou_cost == 2
    assert sun.model.bbox_head.loss.matcher.center_cost == 5
    assert sun.model.bbox_head.loss.giou_weight == 0
    assert short.train_cfg.max_epochs == 90 and short.param_scheduler[1]['end'] == 90
    assert masked.model.backbone.masking_radius == (0.16, 0.64, 1.44)
    assert masked.model.bbox_head.proj_hidden_layers == 1
    full = MODELS.build(scannet.model)
    n_params = sum(p.numel() for p in full.parameters())
    assert 5e6 < n_params < 10e6  # the reference 3DETR has about 7 M parameters
    assert MODELS.build(masked.model).backbone.is_masked


def test_masked_encoder_halves_tokens_and_keeps_attention_local():
    cfg = Config.fromfile(str(CFG_DIR / '3detr-m_1xb8-1080e_scannet-3d.py'))
    enc_cfg = cfg.model.backbone
    enc_cfg.update(num_points=128, num_samples=16, sa_channels=(16, 32), embed_dims=32,
                   ffn_dims=32, interim_num_points=64, interim_num_samples=16,
                   interim_channels=(32, 32))
    torch.manual_seed(0)
    enc = MODELS.build(enc_cfg).eval()
    points = torch.rand(2, 1024, 3) * torch.tensor([5.0, 5.0, 2.5])
    with torch.no_grad():
        out = enc(points)
    assert out['features'].shape == (2, 64, 32) and out['xyz'].shape == (2, 64, 3)
    # token b, j sits on input point indices[b, j]
    assert torch.equal(out['xyz'], points.gather(1, out['indices'][..., None].expand(-1, -1, 3)))
    assert [f.shape[1] for f in out['layer_features']] == [64, 64, 64]

    layer = PreNormEncoderLayer(16, num_heads=4, ffn_dims=16, dropout=0.0).eval()
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [3.0, 0, 0]]])
    x = torch.randn(1, 3, 16)
    mask = torch.cdist(xyz, xyz) >= 0.5
    far = x.clone()
    far[0, 2] = torch.randn(16) * 3  # not a constant shift: LayerNorm would erase it
    with torch.no_grad():
        assert torch.allclose(layer(x, attn_mask=mask)[0, :2], layer(far, attn_mask=mask)[0, :2])
        assert not torch.allclose(layer(x)[0, :2], layer(far)[0, :2])


def test_token_adapter_and_interleaved_concepts():
    cfg = Config.fromfile(str(PRETRAIN))
    pre = cfg.model
    detector = Config.fromfile(str(SCANNET)).model
    assert pre.backbone.to_dict() == detector.backbone.to_dict()  # what transfers is identical
    shrink(pre, width=32)
    torch.manual_seed(0)
    backbone = MODELS.build(pre.backbone)
    adapter = MODELS.build(dict(pre.token_adapter, out_channels=32))
    assert isinstance(adapter, ThreeDETRTokenAdapter)
    extractor = MODELS.build(dict(pre.concept_extractor, in_channels=32, out_dim=24,
                                  num_concepts=4, embed_dims=32, num_heads=4))
    # the paired pipeline gives xyz + height; the adapter feeds xyz; clouds differ in size
    clouds = [torch.cat([torch.rand(n, 3) * 4, torch.rand(n, 1)], 1) for n in (900, 1000)]
    tokens = adapter(backbone, dict(points=clouds))
    assert tokens.feats.shape == (2, 256, 32) and len(tokens.layers) == 3
    concepts = extractor(tokens)
    assert concepts.shape == (2, 4, 24)
    concepts.pow(2).mean().backward()
    for i in range(3):  # every encoder layer is read by its own concept layer
        grads = [p.grad for p in backbone.layers[i].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), i
    # concept layer 0 reads encoder layer 0: changing layer 0's tokens changes the concepts,
    # while dropping the per-layer list falls back to reading the final tokens only
    with torch.no_grad():
        base = extractor(tokens)
        moved = copy.copy(tokens)
        moved.layers = [PointTokens(t.xyz, t.feats + 1.0 * (i == 0), None)
                        for i, t in enumerate(tokens.layers)]
        assert not torch.allclose(extractor(moved), base, atol=1e-5)
        final_only = extractor(PointTokens(*tokens))
        assert not torch.allclose(final_only, base, atol=1e-5)


@pytest.mark.slow
def test_pretrained_encoder_loads_into_3detr_with_zero_missing_keys(tmp_path, synthetic_root):
    """Two pre-training iterations on a synthetic scene export a backbone checkpoint that the
    fine-tuning config loads through init_cfg with no missing and no unexpected keys."""
    from concept_distill.checkpoint.backbone_checkpoint import (
        check_backbone_checkpoint,
        extract_backbone_state,
    )
    from concept_distill.engine import ConceptDistillRunner

    data_root = synthetic_root(num_scenes=1, seed=0, points_per_scene=6000, num_frames=2,
                               image_size=(60, 80))
    cfg = Config.fromfile(str(PRETRAIN))
    cfg.model.allow_random_teacher = True  # no CLIP weights in tests
    shrink(cfg.model)
    cfg.model.token_adapter.out_channels = 64
    cfg.model.concept_extractor.update(num_concepts=4, embed_dims=32, num_heads=4)
    cfg.work_dir = str(tmp_path / 'pretrain')
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data_root), frame_stride=1)
        set_points(loader.dataset.pipeline, 1024)
        for t in loader.dataset.pipeline:
            if t['type'] == 'FrustumPointPairing':
                t.update(num_points=1024, min_points=64)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    with pytest.warns(UserWarning, match='RANDOMLY'):
        runner = ConceptDistillRunner.from_cfg(cfg)
    start = {k: v.clone() for k, v in runner.model.backbone.state_dict().items()}
    runner.train()
    exported = Path(cfg.work_dir) / 'backbone_latest.pth'
    state = extract_backbone_state(torch.load(exported, map_location='cpu', weights_only=True))
    trained = runner.model.backbone.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in trained
               if trained[k].is_floating_point())

    fine = Config.fromfile(str(FINETUNE))
    assert fine.model.backbone.init_cfg.prefix == 'backbone.'
    shrink(fine.model)
    fine.model.backbone.init_cfg.checkpoint = str(exported)
    report = check_backbone_checkpoint(str(exported), fine.model)
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    detector = MODELS.build(fine.model)
    detector.init_weights()
    loaded = detector.backbone.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
