"""Every token adapter is DDP-safe: after one distiller step every trainable parameter has a
gradient, so DDP with mmengine's default ``find_unused_parameters=False`` works.

A parameter that requires grad but takes no part in the loss makes DDP fail at the next
iteration ("Expected to have finished reduction in the prior iteration"); the two-process
run of ``PointNet2TokenAdapter(level=-2)`` is in tests/test_engine/test_distributed_distiller.py.
"""
from __future__ import annotations

import os.path as osp
import warnings

import pytest
import torch
from distill_builders import REPO, TINY_CLIP, distiller_cfg, paired_batch
from mmdet3d.registry import MODELS
from mmengine.config import Config


def _pretrain_model(name: str, backbone: dict, adapter: dict, extractor: dict) -> dict:
    """configs/pretrain/<name>'s model with a smaller backbone and the tiny teacher."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'pretrain', name)).model.to_dict()
    cfg['backbone'].update(backbone)
    cfg['token_adapter'].update(adapter)
    cfg['concept_extractor'].update(num_concepts=4, embed_dims=32, num_heads=4, **extractor)
    cfg['teacher'].update(arch_overrides=TINY_CLIP)
    cfg['allow_random_teacher'] = True
    return cfg


def _with_colour(batch: dict) -> dict:
    """xyz + height points -> xyz + rgb (MinkUNet's 6 input channels)."""
    batch['inputs']['points'] = [torch.cat([p[:, :3], torch.rand(p.shape[0], 3)], 1)
                                 for p in batch['inputs']['points']]
    return batch


CASES = {
    'pointnet2_last_fp': (lambda: distiller_cfg(), paired_batch),
    'pointnet2_inner_fp': (lambda: distiller_cfg(token_adapter=dict(level=-2)), paired_batch),
    'pointnet2_last_sa': (lambda: distiller_cfg(token_adapter=dict(level=0)), paired_batch),
    'threedetr': (lambda: _pretrain_model(
        '3detr-encoder_concept-distill_8xb8-100e_scannet-frames.py',
        dict(num_points=64, num_samples=16, sa_channels=(16, 32), embed_dims=32, ffn_dims=32),
        dict(out_channels=32), {}), paired_batch),
    'point_patch': (lambda: _pretrain_model(
        'ppt-12x384_concept-distill_8xb8-100e_scannet-frames.py',
        dict(depth=2, num_groups=16, group_size=8, embed_dims=32, num_heads=4,
             patch_hidden_channels=(16, 32), patch_fuse_channels=64, pos_hidden=16),
        dict(out_channels=32), dict(num_layers=2)), paired_batch),
    'minkunet': (lambda: _pretrain_model(
        'minkunet34_w32_spconv_concept-distill_8xb8-100e_scannet-frames.py',
        dict(base_channels=8, encoder_channels=[8, 16, 16, 16], encoder_blocks=[1, 1, 1, 1],
             decoder_channels=[16, 16, 16, 16], decoder_blocks=[1, 1, 1, 1]),
        dict(out_channels=16, voxel_size=0.1, max_tokens=128), {}),
        lambda: _with_colour(paired_batch())),
}


@pytest.mark.usefixtures('one_torch_thread')
@pytest.mark.parametrize('case', sorted(CASES))
def test_every_trainable_parameter_gets_a_gradient(case: str) -> None:
    make_cfg, make_batch = CASES[case]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the tiny random teacher's warning
        model = MODELS.build(make_cfg())
    model.train()
    losses = model.loss(**model.data_preprocessor(make_batch(), True))
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'{case}: trainable parameters outside the loss: {missing}'


def test_inner_pointnet2_level_freezes_and_skips_the_later_fp_modules() -> None:
    """level=-2 reads FP module 0's output: FP module 1 is frozen and never runs."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = MODELS.build(distiller_cfg(token_adapter=dict(level=-2)))
        default = MODELS.build(distiller_cfg())
    fp = model.backbone.FP_modules
    assert all(p.requires_grad for p in fp[0].parameters())
    assert not any(p.requires_grad for p in fp[1].parameters())
    assert all(p.requires_grad for p in default.backbone.parameters())  # level -1: no change
    calls = []
    fp[1].register_forward_hook(lambda *args: calls.append(1))
    batch = model.data_preprocessor(paired_batch(b=2), True)['inputs']
    tokens = model.token_adapter(model.backbone, batch)
    assert not calls
    assert model.backbone.num_fp == 2  # restored after the forward
    # the tokens are FP module 0's output: the 2nd densest level (SMALL_POINTS[2] points)
    full = model.backbone(model.token_adapter.stack_points(batch['points']))
    torch.testing.assert_close(tokens.feats, full['fp_features'][1].transpose(1, 2))
    with pytest.raises(ValueError, match='level=3'):
        MODELS.build(distiller_cfg(token_adapter=dict(level=3)))
