"""Concepts stay distinct under the default loss, and collapse into a pooler without it.

Two short learning runs on synthetic ScanNet-format pairs (the PointNet2SASSG pre-training
recipe, shrunk for CPU; small random teacher): the default loss (per-concept target: each
concept's balanced share of the CLIP patch tokens, + global cosine + InfoNCE) against the
same loss with the per-concept term off (every term then sees only the concepts' mean). After
training, the mean pairwise cosine between one sample's concepts is measured on held-out
frames.
"""
from __future__ import annotations

import itertools
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

pytestmark = pytest.mark.slow

PRETRAIN_CFG = REPO_ROOT / 'configs' / 'pretrain' / \
    'pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py'
ITERS = int(os.environ.get('CONCEPT_DIVERSITY_ITERS', 60))
TINY_TEACHER = dict(embed_dim=64, vision_cfg=dict(image_size=64, layers=2, width=128,
                                                  head_width=32, patch_size=16))


def _pipeline(train: bool) -> list[dict]:
    """The recipe's pairing at 64 px and 1,024 points (no random flips off the training set)."""
    steps = [
        dict(type='LoadScenePoints', coord_type='DEPTH', shift_height=True, load_dim=6,
             use_dim=[0, 1, 2]),
        dict(type='LoadPairedImage', with_pixels=True, with_depth=True, decode_size=(64, 64)),
        dict(type='ResizeCropForTeacher', size=(64, 64), mode='squash'),
        dict(type='FrustumPointPairing', num_points=1024, depth_range=(0.1, 10.0),
             occlusion_tol=0.1, min_points=64),
        dict(type='GlobalAlignment', rotation_axis=2),
    ]
    if train:
        steps.append(dict(type='GlobalRotScaleTrans', rot_range=[-0.087266, 0.087266],
                          scale_ratio_range=[1.0, 1.0], shift_height=True))
    return steps + [dict(type='PackPairedInputs')]


def mean_concept_cosine(concepts: torch.Tensor) -> float:
    """Mean over samples of the mean pairwise cosine between the K concepts of a sample."""
    c = F.normalize(concepts, dim=-1)
    sim = c @ c.transpose(1, 2)
    k = sim.shape[-1]
    off = ~torch.eye(k, dtype=torch.bool, device=sim.device)
    return float(sim[:, off].mean())


def _run(data_root, per_concept: bool) -> dict[str, float]:
    """Train ITERS steps; the concepts' and the patch tokens' diversity on held-out frames."""
    torch.manual_seed(0)
    cfg = Config.fromfile(str(PRETRAIN_CFG))
    model_cfg = cfg.model
    model_cfg.allow_random_teacher = True  # no CLIP weights in tests
    model_cfg.backbone.update(num_points=(128, 64, 32, 16), num_samples=(16, 16, 8, 8),
                              sa_channels=((32, 32, 64), (64, 64, 128), (64, 64, 128),
                                           (64, 64, 128)),
                              fp_channels=((128, 128), (128, 128)))
    model_cfg.token_adapter.out_channels = 128
    model_cfg.concept_extractor.update(embed_dims=128, num_heads=4)
    model_cfg.teacher.arch_overrides = TINY_TEACHER
    if not per_concept:
        model_cfg.loss.concept_target = None
    with pytest.warns(UserWarning, match='RANDOMLY'):
        model = MODELS.build(model_cfg)
    datasets = {}
    for split, train in (('train', True), ('val', False)):
        ds = cfg.train_dataloader.dataset.copy()
        ds.update(data_root=str(data_root), ann_file=f'scannet_infos_{split}.pkl',
                  frame_stride=1, pipeline=_pipeline(train))
        datasets[split] = DATASETS.build(ds)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05))
    g = torch.Generator().manual_seed(0)
    order = itertools.cycle(torch.randperm(len(datasets['train']), generator=g).tolist())
    model.train()
    losses = []
    for _ in range(ITERS):
        batch = pseudo_collate([datasets['train'][next(order)] for _ in range(8)])
        losses.append(float(model.train_step(batch, optim)['loss']))
    model.eval()
    val = datasets['val']
    batch = pseudo_collate([val[i] for i in range(min(16, len(val)))])
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        concepts = model.extract_concepts(data['inputs'], data['data_samples'])
        patches = model.teacher_targets(data['inputs'], data['data_samples'])['patch_tokens']
    return dict(concepts=mean_concept_cosine(concepts), patches=mean_concept_cosine(patches),
                first_loss=sum(losses[:5]) / 5, last_loss=sum(losses[-5:]) / 5)


@pytest.fixture(scope='module')
def data_root(synthetic_root):
    """3 synthetic rooms: 2 train the student, the 3rd gives the held-out frames."""
    return synthetic_root(num_scenes=3, seed=0, num_frames=24, points_per_scene=20000,
                          image_size=(96, 128), val_scenes=1)


def test_default_loss_keeps_concepts_distinct(data_root) -> None:
    default = _run(data_root, per_concept=True)
    pooler = _run(data_root, per_concept=False)
    print(f'\nmean pairwise cosine between one sample\'s concepts after {ITERS} iterations '
          f'(held-out frames): default loss {default["concepts"]:.3f}, pooled-only loss '
          f'{pooler["concepts"]:.3f}; teacher patch tokens {default["patches"]:.3f}; '
          f'loss {default["first_loss"]:.2f} -> {default["last_loss"]:.2f}')
    assert default['last_loss'] < default['first_loss']
    assert pooler['concepts'] > 0.95  # nothing separates the concepts: a pooler
    assert default['concepts'] < pooler['concepts'] - 0.1
