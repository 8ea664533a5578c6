"""Mixed precision in pre-training: the student computes in low precision, the teacher in its
own precision, the loss in float32 (CPU bf16 autocast here; a GPU test for AmpOptimWrapper).

Tolerances: bf16 keeps 8 bits of mantissa (~3 significant digits); through the backbone,
the concept extractor and InfoNCE (logits up to 1/0.07 = 14 x cos) the loss terms of a
bf16 step were measured within 0.3% of fp32's, the bound here is 3%.
"""
from __future__ import annotations

import copy

import pytest
import torch
from distill_builders import build_distiller, paired_batch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from concept_distill.engine.amp import CPUAmpOptimWrapper


def _eval_norms(model: nn.Module) -> nn.Module:
    """Training mode with BN on running statistics: with batch statistics over a few points,
    BN's mean subtraction amplifies any rounding (test_distributed's PointNet2 test)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _step(model: nn.Module, wrapper_cls, **kwargs) -> tuple[dict, dict]:
    """One train_step without moving the weights (lr 0): the log and the output dtypes."""
    wrapper = wrapper_cls(optimizer=torch.optim.SGD(model.parameters(), lr=0.0), **kwargs)
    dtypes = {}
    hooks = [model.concept_extractor.register_forward_hook(
        lambda m, i, o: dtypes.__setitem__('concepts', o.dtype))]
    teacher_forward = model.teacher.forward

    def record_teacher(imgs):
        out = teacher_forward(imgs)
        dtypes['teacher'] = out['global'].dtype
        dtypes['teacher_autocast'] = torch.is_autocast_enabled(imgs.device.type)
        return out

    model.teacher.forward = record_teacher
    try:
        log = model.train_step(paired_batch(b=3, seed=4), wrapper)
    finally:
        model.teacher.forward = teacher_forward
        for h in hooks:
            h.remove()
    return {k: float(v.detach()) for k, v in log.items()}, dtypes


def test_teacher_keeps_its_precision_inside_autocast() -> None:
    """Online teacher targets are bit-identical with and without a bf16 autocast around them."""
    model = build_distiller()
    data = model.data_preprocessor(paired_batch(b=2), True)
    plain = model.teacher_targets(data['inputs'], data['data_samples'])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = model.teacher_targets(data['inputs'], data['data_samples'])
    assert set(plain) == set(amp)
    for key in plain:
        assert amp[key].dtype == torch.float32
        torch.testing.assert_close(amp[key], plain[key], rtol=0, atol=0, msg=key)


def test_bf16_step_on_cpu_matches_fp32() -> None:
    """CPUAmpOptimWrapper: concepts in bf16, the fp32 teacher outside autocast, every loss term
    within 3% of the fp32 step's."""
    model = _eval_norms(build_distiller())
    fp32, types32 = _step(copy.deepcopy(model), OptimWrapper)
    bf16, types16 = _step(model, CPUAmpOptimWrapper, dtype='bfloat16')
    assert types32['concepts'] == torch.float32 and types16['concepts'] == torch.bfloat16
    assert types16['teacher'] == torch.float32 and types16['teacher_autocast'] is False
    terms = [k for k in fp32 if k.startswith('loss')]
    assert {'loss', 'loss_concept', 'loss_global', 'loss_contrastive', 'loss_set'} <= set(terms)
    for k in terms:
        assert bf16[k] == pytest.approx(fp32[k], rel=3e-2), (k, bf16[k], fp32[k])
    print({k: (round(fp32[k], 5), round(bf16[k], 5)) for k in terms})


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_step_on_gpu_matches_fp32(dtype: str) -> None:
    """AmpOptimWrapper (mmengine's, loss scaling) on CUDA: finite, within 3% of fp32, the
    teacher in its own precision."""
    model = _eval_norms(build_distiller()).cuda()
    fp32, _ = _step(copy.deepcopy(model), OptimWrapper)
    amp, types = _step(model, AmpOptimWrapper, dtype=dtype, loss_scale='dynamic')
    assert types['concepts'] == getattr(torch, dtype)
    assert types['teacher'] == torch.float32 and types['teacher_autocast'] is False
    for k in (k for k in fp32 if k.startswith('loss')):
        assert torch.isfinite(torch.tensor(amp[k])), k
        assert amp[k] == pytest.approx(fp32[k], rel=3e-2), (k, amp[k], fp32[k])
