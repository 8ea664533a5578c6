"""End to end on CPU through tools/train.py: the point-patch transformer student learns.

Data: synthetic ScanNet-format rooms (the root the PointNet++ learning test uses, so one
session generates it once): 4 rooms x 96 posed frames train, a 5th room is the held-out split,
never seen in training. Teacher: a small random open_clip ViT (64 px, 2 layers), online.
Student: configs/demo/pretrain_ppt_synthetic.py narrowed further: 12 blocks, 64 wide, 32
patches x 32 points of 1,024-point frames, one concept layer per block. The points carry
their colour (xyz + rgb, ``in_channels=6``): a random teacher embeds mostly the colour layout
of a frame, and the colour path of the patch encoder is exercised.

Measured (2 shared CPU cores, 150 iterations, 2m10s of CPU time): loss 4.19 -> 2.52,
contrastive 2.66 -> 1.64 (log 16 = 2.77 is chance for a batch of 16); held-out room: top-1
0.31 among 8 candidates (chance 0.125), mean cosine 0.34.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mmengine
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS

pytestmark = pytest.mark.slow

DEMO_CFG = REPO_ROOT / 'configs' / 'demo' / 'pretrain_ppt_synthetic.py'
ITERS = 150
LOG_INTERVAL = 10
BATCH = 16
CANDIDATES = 8  # galleries of 8 held-out frames: ~96 queries give a clear margin over chance

TEMPLATE = """
_base_ = ['{base}']
data_root = '{root}/'
teacher = dict(type='CLIPTeacher', model_name='ViT-B-16', pretrained=None, precision='fp32',
               resize_mode='squash', mapping=None,
               arch_overrides=dict(embed_dim=64, vision_cfg=dict(
                   image_size=64, layers=2, width=128, head_width=32, patch_size=16)))
prep = dict(type='ResizeCropForTeacher', size=(64, 64), mode='squash')
# Points: x y z, height (shift_height), r g b normalised to [-0.5, 0.5].
load = [
    dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
         use_dim=[0, 1, 2, 3, 4, 5], use_color=True),
    dict(type='NormalizePointsColor', color_mean=[127.5, 127.5, 127.5]),
    dict(type='LoadPairedImage', with_pixels=True, with_depth=True, decode_size=(64, 64)),
    prep,
    dict(type='FrustumPointPairing', num_points=1024, depth_range=(0.1, 10.0),
         occlusion_tol=0.1, min_points=64),
    dict(type='GlobalAlignment', rotation_axis=2),
]
train_pipeline = load + [
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
         scale_ratio_range=[1.0, 1.0], shift_height=True),
    dict(type='PackPairedInputs')]
test_pipeline = load + [dict(type='PackPairedInputs')]
# Train on the train rooms, validate on the held-out room (a different scene).
train_dataloader = dict(batch_size={batch}, dataset=dict(
    data_root=data_root, ann_file='scannet_infos_train.pkl', pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(
    data_root=data_root, ann_file='scannet_infos_val.pkl', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ConceptRetrievalMetric', num_candidates={candidates})
test_evaluator = val_evaluator
model = dict(
    teacher=teacher,
    allow_random_teacher=True,
    backbone=dict(in_channels=6, num_groups=32, group_size=32, embed_dims=64, num_heads=4,
                  patch_hidden_channels=(32, 64), patch_fuse_channels=128),
    token_adapter=dict(out_channels=64, use_dims=[0, 1, 2, 4, 5, 6]),  # xyz + rgb
    concept_extractor=dict(embed_dims=64, num_heads=4, num_concepts=8))
max_iters = {iters}
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max_iters,
         T_max=max_iters - 10, eta_min=1e-5)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval={log_interval}),
                     checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
"""


@pytest.fixture(scope='module')
def data_root(synthetic_root) -> Path:
    """5 synthetic rooms: 4 train, the 5th held out (same arguments as the PointNet++ test)."""
    return synthetic_root(num_scenes=5, seed=0, num_frames=96, points_per_scene=20000,
                          image_size=(96, 128), val_scenes=1)


@pytest.fixture(scope='module')
def run(data_root: Path) -> dict:
    """tools/train.py on the derived config; the log's scalars split into train / val."""
    cfg = data_root.parent / 'ppt_learn.py'
    cfg.write_text(TEMPLATE.format(base=DEMO_CFG, root=data_root, batch=BATCH, iters=ITERS,
                                   candidates=CANDIDATES, log_interval=LOG_INTERVAL))
    work_dir = data_root.parent / 'ppt_learn'
    # One intra-op thread: with two OpenMP threads on a shared 2-core machine each small GEMM
    # waits for the other thread (measured: 10x slower forward passes).
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), str(cfg),
                           '--work-dir', str(work_dir)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (path,) = work_dir.glob('*/vis_data/scalars.json')
    scalars = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return dict(work_dir=work_dir, train=[s for s in scalars if 'loss' in s],
                val=[s for s in scalars if 'align/top1' in s])


def test_held_out_room_is_another_scene(data_root: Path) -> None:
    train = {i['lidar_points']['lidar_path'] for i in
             mmengine.load(data_root / 'scannet_infos_train.pkl')['data_list']}
    val = {i['lidar_points']['lidar_path'] for i in
           mmengine.load(data_root / 'scannet_infos_val.pkl')['data_list']}
    assert len(train) == 4 and len(val) == 1 and not train & val


def test_loss_falls(run: dict) -> None:
    losses = [s['loss'] for s in run['train']]
    contrastive = [s['loss_contrastive'] for s in run['train']]
    print(f'\nloss: first {losses[:2]} last {losses[-2:]}; contrastive first '
          f'{contrastive[:2]} last {contrastive[-2:]}')
    assert len(losses) == ITERS // LOG_INTERVAL
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2])
    # InfoNCE over a batch of 16 scores log(16) for a student that tells the pairs apart no
    # better than chance; the trained one must be well below.
    assert sum(contrastive[-2:]) / 2 < 0.8 * math.log(BATCH)
    assert sum(contrastive[-2:]) < sum(contrastive[:2])


def test_held_out_room_retrieval_above_chance(run: dict) -> None:
    (final,) = run['val'][-1:]
    print(f"\nheld-out room: top-1 {final['align/top1']:.3f} among "
          f"{int(final['align/num_candidates'])} candidates (chance {final['align/chance']:.3f}"
          f"; consecutive-frame galleries {final['align/top1_ordered']:.3f}), mean cosine "
          f"{final['align/cos']:.3f}")
    assert final['align/num_candidates'] == CANDIDATES
    # ~96 queries: chance gives 12 +- 3.2 hits; twice chance is 24 (3.7 sd above).
    assert final['align/top1'] >= 2 * final['align/chance']


def test_export_is_the_point_patch_transformer(run: dict) -> None:
    exported = run['work_dir'] / f'backbone_iter_{ITERS}.pth'
    ckpt = torch.load(exported, weights_only=True)
    assert ckpt['meta']['backbone_type'] == 'PointPatchTransformer'
    backbone = MODELS.build(ckpt['meta']['backbone_cfg'])
    state = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()}
    assert set(state) == set(backbone.state_dict())  # nothing of the concept stream
    backbone.load_state_dict(state, strict=True)
    assert len(backbone.blocks) == 12 and backbone.in_channels == 6
