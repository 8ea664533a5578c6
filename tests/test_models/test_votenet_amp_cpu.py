"""Fine-tuning under ``--amp`` on CPU: mmdet3d's VoteNet trains a step in bf16 autocast
(CPUAmpOptimWrapper), with losses near fp32's.

Smaller sampling than the config (parameter shapes unchanged) keeps the bf16 step short: on
CPUs without native bf16 the convolutions take a slow fallback. BN runs on its running
statistics for the comparison (batch statistics amplify rounding, see test_distributed).
Tolerance: the total loss within 5% of fp32's (bf16 keeps ~3 significant digits; VoteNet's
vote and centre losses compare coordinates of several metres).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from test_votenet_cpu import VOTENET_CONFIG, _fake_ground_truth, _scene_points

from concept_distill.engine.amp import CPUAmpOptimWrapper


def _step(model: torch.nn.Module, wrapper_cls, data: dict) -> tuple[dict, torch.dtype]:
    """One train_step at lr 0: the log and the backbone's output dtype."""
    wrapper = wrapper_cls(optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
    seen = {}
    hooks = [model.backbone.register_forward_hook(
        lambda m, i, o: seen.__setitem__('dtype', o['fp_features'][-1].dtype)),
        # the first conv's gradient, before the wrapper's zero_grad clears it
        next(model.backbone.parameters()).register_hook(lambda g: seen.__setitem__('grad', g))]
    try:
        log = model.train_step(copy.deepcopy(data), wrapper)
    finally:
        for h in hooks:
            h.remove()
    grad = seen.get('grad')
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    return {k: float(v.detach()) for k, v in log.items()}, seen['dtype']


def test_votenet_step_in_bf16_autocast_on_cpu(fixtures_root: Path) -> None:
    from mmdet3d.registry import MODELS

    cfg = Config.fromfile(str(VOTENET_CONFIG)).model
    cfg.backbone.num_points = (512, 256, 128, 64)
    cfg.bbox_head.vote_aggregation_cfg.num_point = 64
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    points = [_scene_points(fixtures_root, 4096, seed) for seed in (0, 1)]
    data = dict(inputs=dict(points=points),
                data_samples=[_fake_ground_truth(p, seed) for seed, p in enumerate(points)])
    fp32, dtype32 = _step(copy.deepcopy(model), OptimWrapper, data)
    bf16, dtype16 = _step(model, CPUAmpOptimWrapper, data)
    assert (dtype32, dtype16) == (torch.float32, torch.bfloat16)
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.values())
    assert bf16['loss'] == pytest.approx(fp32['loss'], rel=5e-2), (bf16, fp32)
    print({k: (round(fp32[k], 4), round(bf16[k], 4)) for k in fp32 if 'loss' in k})
