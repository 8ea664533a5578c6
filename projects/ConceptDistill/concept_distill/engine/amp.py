"""Mixed precision that also runs on CPU: bf16 autocast there, mmengine's AMP on accelerators.

mmengine's ``AmpOptimWrapper`` refuses CPU processes (its float16 ``GradScaler`` is CUDA's).
CPU autocast computes matmuls and convolutions in bfloat16, whose exponent range is float32's,
so no loss scaling is needed: ``CPUAmpOptimWrapper`` is a plain ``OptimWrapper`` whose
``optim_context`` adds ``torch.autocast('cpu', dtype=torch.bfloat16)``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmdet3d.registry import OPTIM_WRAPPERS
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from torch import nn

# Keys of mmengine's AmpOptimWrapper that mean nothing without a GradScaler.
_SCALER_KEYS = ('loss_scale', 'use_fsdp')


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` with CPU autocast (bfloat16 by default) in the forward, no loss scale."""

    valid_dtypes = ('bfloat16', 'float16')

    def __init__(self, dtype: str | torch.dtype = 'bfloat16', **kwargs) -> None:
        """``dtype``: autocast dtype; float16 works too but unscaled gradients may underflow."""
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype must be one of {self.valid_dtypes}, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'CPU autocast dtype must be bfloat16 or float16, got {dtype}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of ``OptimWrapper`` plus CPU autocast."""
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        """Load an optimizer state; a GPU AMP checkpoint's ``loss_scaler`` entry is dropped."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)  # resuming a GPU AMP run on CPU
        super().load_state_dict(state_dict)


def enable_amp(cfg: Config, device: str | None = None) -> Config:
    """What ``--amp`` does to ``cfg.optim_wrapper``, by the device this process trains on.

    Accelerator: mmengine's ``AmpOptimWrapper`` with a dynamic loss scale (mmdet3d's
    behaviour; a config's own ``dtype`` is kept). CPU: ``CPUAmpOptimWrapper`` in bfloat16
    (a config's ``AmpOptimWrapper`` becomes one; its loss-scale settings are dropped).
    """
    device = device or get_device()
    wrapper = cfg.optim_wrapper
    current = wrapper.get('type', 'OptimWrapper')
    wanted = 'CPUAmpOptimWrapper' if device == 'cpu' else 'AmpOptimWrapper'
    if current == wanted:
        print_log('AMP training is already enabled in your config.', logger='current',
                  level=logging.WARNING)
        return cfg
    if wanted == 'AmpOptimWrapper':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
    else:
        for key in _SCALER_KEYS:
            wrapper.pop(key, None)
        dtype = str(wrapper.get('dtype') or 'bfloat16').replace('torch.', '')
        if dtype != 'bfloat16':
            # float16 needs the loss scaling a GPU run gets; bfloat16 does not.
            print_log(f'--amp on CPU: autocast in bfloat16 instead of {dtype}.',
                      logger='current', level=logging.WARNING)
        wrapper.dtype = 'bfloat16'
        wrapper.type = 'CPUAmpOptimWrapper'
        print_log('--amp on CPU: bfloat16 autocast, no loss scaling (CPUAmpOptimWrapper).',
                  logger='current')
        if not cpu_has_native_bf16():
            print_log('--amp on CPU: this CPU has no native bfloat16 (AVX512-BF16/AMX), so '
                      'bf16 convolutions take a slow fallback: expect slower steps than fp32 '
                      '(docs/getting_started.md).', logger='current', level=logging.WARNING)
    return cfg


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (else torch's bf16 convs are emulated)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False
