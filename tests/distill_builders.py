"""Small distillers, paired batches and the pre-training optimizer shared by the distill tests."""
from __future__ import annotations

import copy
import os.path as osp

import mmdet3d
import pytest
import torch
from conftest import REPO_ROOT
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

REPO = str(REPO_ROOT)
VOTENET_CFG = osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'votenet',
                       'votenet_8xb8_scannet-3d.py')
# The tiny teacher of test_method_teacher (32-d embedding, 2x2 patches of a 32 px image).
TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32,
                                 patch_size=16),
                 text_cfg=dict(layers=1, width=32, heads=2, vocab_size=64, context_length=8))
SMALL_POINTS = (128, 64, 32, 16)  # per-level sample counts; parameter shapes do not depend on it


def votenet_backbone(num_points: tuple | None = SMALL_POINTS) -> dict:
    """mmdet3d's VoteNet ScanNet backbone config (optionally with fewer sampled points)."""
    cfg = copy.deepcopy(Config.fromfile(VOTENET_CFG).model.backbone.to_dict())
    if num_points is not None:
        cfg['num_points'] = num_points
    return cfg


def distiller_cfg(**overrides) -> dict:
    """The project's PointNet2 distiller config, shrunk for CPU tests."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models',
                                   'pointnet2-sassg_concept-distill.py')).model.to_dict()
    cfg['backbone']['num_points'] = SMALL_POINTS
    cfg['allow_random_teacher'] = True  # the tiny teacher has no weights file
    cfg['teacher'].update(arch_overrides=TINY_CLIP)
    cfg['concept_extractor'].update(num_concepts=4, embed_dims=32, num_heads=4, num_layers=1)
    cfg['loss'].update(set_weight=0.5, center_momentum=0.9)  # exercise every default-off term
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def build_distiller(**overrides):
    """Build a small ConceptDistiller (random tiny teacher: expected warning)."""
    with pytest.warns(UserWarning, match='RANDOMLY'):
        return MODELS.build(distiller_cfg(**overrides))


def paired_batch(b: int = 3, n: int = 256, seed: int = 0, img: bool = True) -> dict:
    """A batch as the paired dataset packs it: points (N, 4) xyz+height, uint8 images, and
    each point's pixel (`pixel_uv`) in the 24 x 32 frame."""
    g = torch.Generator().manual_seed(seed)
    points, imgs, samples = [], [], []
    for _ in range(b):
        xyz = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 4.0, 2.5])
        points.append(torch.cat([xyz, xyz[:, 2:] - xyz[:, 2:].min()], dim=1))
        imgs.append(torch.randint(0, 256, (3, 24, 32), generator=g, dtype=torch.uint8))
        sample = Det3DDataSample(metainfo=dict(frame_id=f'f{len(samples)}', img_shape=(24, 32)))
        sample.pixel_uv = torch.rand(n, 2, generator=g) * torch.tensor([31.0, 23.0])
        samples.append(sample)
    inputs = dict(points=points)
    if img:
        inputs['img'] = imgs
    return dict(inputs=inputs, data_samples=samples)


def optim_wrapper_for(model):
    """The optimizer of the pre-training schedule, built by mmengine's constructor."""
    sched = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'schedules',
                                     'concept-distill-pretrain-100e.py'))
    return build_optim_wrapper(model, sched.optim_wrapper)
