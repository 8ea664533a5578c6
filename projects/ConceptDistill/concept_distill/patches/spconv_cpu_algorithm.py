"""Make spconv 2.x sparse convolutions run on CPU tensors by choosing ``ConvAlgo.Native``.

spconv picks its algorithm when a layer is *built* (``MaskImplicitGemm`` on CUDA builds of
spconv), and that algorithm calls ``torch.cuda`` even for CPU features. The native
(gather-GEMM-scatter) algorithm has CPU kernels, and in spconv >= 2.2 every algorithm stores
its weight in the same KRSC layout, so the algorithm can be switched per call without touching
the parameters or the checkpoints. CUDA features keep the algorithm chosen at build time.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

_PATCH_FLAG = '_concept_distill_cpu_dispatch'


def _features_on_cpu(sparse_tensor: Any) -> bool:
    """True when a ``SparseConvTensor``'s features live on the CPU."""
    features = getattr(sparse_tensor, 'features', None)
    return isinstance(features, torch.Tensor) and features.device.type == 'cpu'


@contextmanager
def _native_algo(module: Any) -> Iterator[None]:
    """Temporarily set ``module.algo`` to ``ConvAlgo.Native`` (restored afterwards)."""
    from spconv.core import ConvAlgo

    saved = module.algo
    module.algo = ConvAlgo.Native
    try:
        yield
    finally:
        module.algo = saved


def _dispatch_by_device(method: Callable, input_pos: int) -> Callable:
    """Wrap a spconv method so that CPU inputs run with the native algorithm."""
    from spconv.core import ConvAlgo

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        sparse_input = args[input_pos] if len(args) > input_pos else kwargs.get('input')
        if self.algo != ConvAlgo.Native and _features_on_cpu(sparse_input):
            with _native_algo(self):
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    setattr(wrapper, _PATCH_FLAG, True)
    return wrapper


def install() -> bool:
    """Patch spconv's convolution and max-pool layers to dispatch their algorithm by device.

    Idempotent. Returns False (and changes nothing) when spconv 2.x is not installed.
    """
    try:
        from spconv.pytorch.conv import SparseConvolutionBase
        from spconv.pytorch.pool import SparseMaxPool
    except ImportError:
        return False
    # `_conv_forward(self, training, input, ...)`: the sparse tensor is the 2nd positional arg.
    if not getattr(SparseConvolutionBase._conv_forward, _PATCH_FLAG, False):
        SparseConvolutionBase._conv_forward = _dispatch_by_device(
            SparseConvolutionBase._conv_forward, input_pos=1)
    # `forward(self, input)`.
    if not getattr(SparseMaxPool.forward, _PATCH_FLAG, False):
        SparseMaxPool.forward = _dispatch_by_device(SparseMaxPool.forward, input_pos=0)
    return True


def installed() -> bool:
    """Whether :func:`install` is active."""
    try:
        from spconv.pytorch.conv import SparseConvolutionBase
    except ImportError:
        return False
    return bool(getattr(SparseConvolutionBase._conv_forward, _PATCH_FLAG, False))
