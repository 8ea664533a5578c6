"""End to end on CPU through tools/train.py: pre-training learns, the hook exports, VoteNet
fine-tunes from the export.

Data: synthetic ScanNet-format rooms: 4 pre-training rooms x 96 posed frames train; a 5th
room, never seen in pre-training, gives the held-out pairs (and is the VoteNet val split).
Teacher: a small random open_clip ViT (64 px, 2 layers; ViT-B-16 is too slow for a CPU test).

- learning run: a half-width PointNet2SASSG (VoteNet's layout, half the channels, xyz +
  height + colour in) for 200 iterations; retrieval on the unseen room among 8 candidates;
  its export must *not* load into VoteNet (a clear error names the mismatch);
- transfer run: VoteNet's exact PointNet2SASSG for 2 iterations; its export loads into
  mmdet3d's VoteNet config (only `init_cfg` added), then VoteNet trains a step and predicts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mmengine
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS
from mmengine.config import Config

from concept_distill.checkpoint import BackboneCheckpointError, check_backbone_checkpoint

pytestmark = pytest.mark.slow

PRETRAIN_CFG = REPO_ROOT / 'configs' / 'pretrain' / \
    'pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py'
VOTENET_CFG = REPO_ROOT / 'configs' / 'votenet' / 'votenet_concept-distill_8xb8_scannet-3d.py'
LEARN_ITERS = 200
CANDIDATES = 8  # galleries of 8 frames of the unseen room (~96 queries; see the test below)

PRETRAIN_TEMPLATE = """
_base_ = ['{base}']
data_root = '{root}/'
prep = dict(type='ResizeCropForTeacher', size=(64, 64), mode='squash')
load = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim={use_dim}, use_color={use_color}),{color_norm}
    dict(type='LoadPairedImage', with_pixels=True, with_depth=True, decode_size=(64, 64)),
    prep,
    dict(type='FrustumPointPairing', num_points={points}, depth_range=(0.1, 10.0),
         occlusion_tol=0.1, min_points=64),
    dict(type='GlobalAlignment', rotation_axis=2),
]
train_pipeline = load + [
    dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
         scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='PackPairedInputs')]
test_pipeline = load + [dict(type='PackPairedInputs')]
# Train on every frame of the train rooms; validate on the room of the val split, which
# pre-training never sees (frames of a training room would share its layout and colours).
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='scannet_infos_train.pkl', frame_stride=1,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='scannet_infos_val.pkl', frame_stride=1,
                 pipeline=test_pipeline, indices=list(range(0, {val_frames}, {val_stride}))))
test_dataloader = val_dataloader
val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates={candidates})
test_evaluator = val_evaluator
model = dict(
    allow_random_teacher=True,  # no CLIP weights in tests
    # VoteNet samples 2048/1024/512/256 points; fewer here (parameter shapes do not change).
    backbone=dict(num_points=(128, 64, 32, 16), num_samples=(16, 16, 8, 8){backbone}),
    {student}
    teacher=dict(arch_overrides=dict(
        embed_dim=64,
        vision_cfg=dict(image_size=64, layers=2, width=128, head_width=32, patch_size=16))))
max_iters = {max_iters}
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max(max_iters, 11),
         T_max=max(max_iters - 10, 1), eta_min=1e-5)]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(logger=dict(interval={log_interval}),
                     checkpoint=dict(by_epoch=False, interval=max_iters, save_best=None))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""
HALF_WIDTH = """, sa_channels=((32, 32, 64), (64, 64, 128), (64, 64, 128), (64, 64, 128)),
                  fp_channels=((128, 128), (128, 128))"""
# Points x y z, height, r g b (colours normalised to [-0.5, 0.5]): a random teacher embeds
# mostly a frame's colour layout, which xyz alone cannot tell for an unseen room.
COLOR_NORM = """
    dict(type='NormalizePointsColor', color_mean=[127.5, 127.5, 127.5]),"""
HALF_WIDTH_COLOR = HALF_WIDTH + ', in_channels=7'
HALF_WIDTH_STUDENT = ("token_adapter=dict(out_channels=128),\n"
                      "    concept_extractor=dict(embed_dims=128, num_heads=4),")

FINETUNE_TEMPLATE = """
_base_ = ['{base}']
data_root = '{root}/'
pretrained_backbone = '{backbone}'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained_backbone)))
# mmdet3d's ScanNet pipelines with 2048 instead of 40000 sampled points (CPU budget).
train_pipeline = {train_pipeline}
test_pipeline = {test_pipeline}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(times=1, dataset=dict(data_root=data_root,
                                                           pipeline=train_pipeline)))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1, val_interval=1)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=1, save_last=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""


def _train(cfg_path: Path, work_dir: Path, timeout: int) -> str:
    """Run tools/train.py; return its output (the test fails with the tail on error)."""
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), str(cfg_path),
                           '--work-dir', str(work_dir)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _scalars(work_dir: Path) -> list[dict]:
    (path,) = work_dir.glob('*/vis_data/scalars.json')
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope='module')
def data_root(synthetic_root) -> Path:
    """Synthetic rooms: 4 for pre-training, a 5th held out (pre-training val, VoteNet val)."""
    return synthetic_root(num_scenes=5, seed=0, num_frames=96, points_per_scene=20000,
                          image_size=(96, 128), val_scenes=1)


def _pretrain(root: Path, name: str, max_iters: int, batch: int, points: int,
              backbone: str, student: str, log_interval: int, val_stride: int,
              color: bool = False, candidates: int = 32) -> dict:
    infos = mmengine.load(root / 'scannet_infos_val.pkl')['data_list']
    val_frames = sum(len(info['frames']) for info in infos)  # rejected poses may drop some
    cfg = root.parent / f'{name}.py'
    cfg.write_text(PRETRAIN_TEMPLATE.format(
        base=PRETRAIN_CFG, root=root, val_frames=val_frames, batch=batch, points=points,
        backbone=backbone, student=student, max_iters=max_iters, log_interval=log_interval,
        val_stride=val_stride, use_dim=[0, 1, 2, 3, 4, 5] if color else [0, 1, 2],
        use_color=color, color_norm=COLOR_NORM if color else '', candidates=candidates))
    work_dir = root.parent / name
    log = _train(cfg, work_dir, timeout=1800)
    scalars = _scalars(work_dir)
    return dict(work_dir=work_dir, log=log, train=[s for s in scalars if 'loss' in s],
                val=[s for s in scalars if 'align/top1' in s])


@pytest.fixture(scope='module')
def learning_run(data_root: Path) -> dict:
    """200 iterations of a half-width PointNet2SASSG student."""
    return _pretrain(data_root, 'learn', LEARN_ITERS, batch=16, points=1024,
                     backbone=HALF_WIDTH_COLOR, student=HALF_WIDTH_STUDENT, log_interval=10,
                     val_stride=1, color=True, candidates=CANDIDATES)


@pytest.fixture(scope='module')
def transfer_run(data_root: Path) -> dict:
    """2 iterations of VoteNet's exact PointNet2SASSG: what the export must carry."""
    return _pretrain(data_root, 'transfer', 2, batch=4, points=512, backbone='', student='',
                     log_interval=1, val_stride=12)


def test_held_out_room_is_another_scene(data_root: Path) -> None:
    def scenes(split: str) -> set[str]:
        infos = mmengine.load(data_root / f'scannet_infos_{split}.pkl')['data_list']
        return {i['lidar_points']['lidar_path'] for i in infos}

    train, val = scenes('train'), scenes('val')
    assert len(train) == 4 and len(val) == 1 and not train & val


def test_loss_falls(learning_run: dict) -> None:
    losses = [s['loss'] for s in learning_run['train']]
    contrastive = [s['loss_contrastive'] for s in learning_run['train']]
    print(f'\nloss: first {losses[:2]} last {losses[-2:]}')
    assert len(losses) == LEARN_ITERS // 10
    assert sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2
    assert sum(contrastive[-2:]) < sum(contrastive[:2])


def test_heldout_retrieval_well_above_chance(learning_run: dict) -> None:
    (final,) = learning_run['val'][-1:]
    print(f"\nunseen room: top-1 {final['align/top1']:.3f} among "
          f"{int(final['align/num_candidates'])} candidates (chance {final['align/chance']:.3f},"
          f" x{final['align/top1_over_chance']:.1f}; galleries in frame order: "
          f"{final['align/top1_ordered']:.3f}), mean cosine {final['align/cos']:.3f}")
    assert final['align/num_candidates'] == CANDIDATES
    # ~96 queries from the unseen room: chance gives 12 +- 3.2 hits among 8 candidates. The
    # validation's point sampling is not bit-reproducible across runs (two runs of this test,
    # identical training losses: top-1 0.271 / 0.229, frame-order galleries 0.240 / 0.312), so
    # both gallery orders must reach 1.5x chance (18 hits, 1.9 sd above it, each).
    assert final['align/top1'] >= 1.5 * final['align/chance']
    assert final['align/top1_ordered'] >= 1.5 * final['align/chance']


def test_export_of_another_backbone_is_refused_by_votenet(learning_run: dict) -> None:
    exported = learning_run['work_dir'] / f'backbone_iter_{LEARN_ITERS}.pth'
    assert torch.load(exported, weights_only=True)['meta']['iteration'] == LEARN_ITERS
    votenet = MODELS.build(Config.fromfile(str(VOTENET_CFG)).model)
    with pytest.raises(BackboneCheckpointError, match='shape mismatches') as err:
        check_backbone_checkpoint(str(exported), votenet.backbone)
    assert 'checkpoint (128,) vs target (256,)' in str(err.value)  # half vs full width


def test_hook_exports_a_backbone_that_loads_into_votenet(transfer_run: dict) -> None:
    work_dir = transfer_run['work_dir']
    exported = work_dir / 'backbone_iter_2.pth'
    assert exported.is_file() and (work_dir / 'backbone_latest.pth').is_file()
    backbone = torch.load(exported, weights_only=True)  # tensors + plain metadata only
    meta = backbone['meta']
    assert meta['iteration'] == 2 and meta['backbone_type'] == 'PointNet2SASSG'
    assert meta['teacher']['weights_digest'] == 'random-init-seed0'
    assert meta['source_checkpoint'].endswith('iter_2.pth')
    assert meta['source_config'].endswith('transfer.py')
    # The export equals the backbone of the full checkpoint it mirrors (our own run: trusted).
    full = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    want = {k: v for k, v in full['state_dict'].items() if k.startswith('backbone.')}
    assert set(want) == set(backbone['state_dict'])
    assert all(torch.equal(want[k], backbone['state_dict'][k]) for k in want)

    # mmdet3d's VoteNet ScanNet config with only the init_cfg added: zero missing / unexpected.
    cfg = Config.fromfile(str(VOTENET_CFG))
    cfg.model.backbone.init_cfg.checkpoint = str(exported)
    votenet = MODELS.build(cfg.model)
    report = check_backbone_checkpoint(str(exported), votenet.backbone)
    assert (report.missing, report.unexpected, report.shape_mismatch) == ([], [], [])
    votenet.init_weights()
    loaded = votenet.backbone.state_dict()
    for key, value in backbone['state_dict'].items():
        assert torch.equal(loaded[key[len('backbone.'):]], value), key


def test_votenet_finetunes_and_predicts_from_the_export(data_root: Path,
                                                        transfer_run: dict) -> None:
    base = Config.fromfile(str(VOTENET_CFG))
    train_pipeline = [dict(t) for t in base.train_pipeline]
    test_pipeline = [dict(t) for t in base.test_pipeline]
    for t in train_pipeline:
        if t['type'] == 'PointSample':
            t['num_points'] = 2048
    aug = next(t for t in test_pipeline if t['type'] == 'MultiScaleFlipAug3D')
    aug['transforms'] = [dict(t, num_points=2048) if t['type'] == 'PointSample' else t
                         for t in aug['transforms']]
    cfg = data_root.parent / 'finetune.py'
    cfg.write_text(FINETUNE_TEMPLATE.format(
        base=VOTENET_CFG, root=data_root,
        backbone=transfer_run['work_dir'] / 'backbone_latest.pth',
        train_pipeline=repr(train_pipeline), test_pipeline=repr(test_pipeline)))
    work_dir = data_root.parent / 'finetune'
    log = _train(cfg, work_dir, timeout=900)
    assert 'matches the backbone (0 missing, 0 unexpected keys)' in log
    assert 'backbone tensors equal the pre-trained checkpoint' in log
    scalars = _scalars(work_dir)
    train = [s for s in scalars if 'vote_loss' in s]
    assert len(train) == 1 and torch.isfinite(torch.tensor(train[0]['loss']))
    # Validation ran VoteNet's predict on the held-out room and mmdet3d's indoor metric.
    assert any('mAP_0.25' in s for s in scalars), scalars[-1]
