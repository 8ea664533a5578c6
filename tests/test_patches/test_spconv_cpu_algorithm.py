"""spconv layers run on CPU features with ConvAlgo.Native; results match dense convolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from spconv.core import ConvAlgo
from spconv.pytorch import (
    SparseConv3d,
    SparseConvTensor,
    SparseInverseConv3d,
    SparseMaxPool3d,
    SubMConv3d,
)

from concept_distill.patches.spconv_cpu_algorithm import install as install_spconv_cpu_dispatch
from concept_distill.patches.spconv_cpu_algorithm import (
    installed as spconv_cpu_dispatch_installed,
)


def _sparse_input(num: int = 60, channels: int = 4, shape: int = 8, batch: int = 2,
    seed: int = 0) -> SparseConvTensor:
    g = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.cat([torch.randint(0, batch, (num, 1), generator=g),
    torch.randint(0, shape, (num, 3), generator=g)], 1), dim=0)
    feats = torch.randn(coords.shape[0], channels, generator=g)
    return SparseConvTensor(feats, coords.int(), [shape] * 3, batch)


def _dense_weight(conv: torch.nn.Module) -> torch.Tensor:
    """spconv's KRSC weight (out, kD, kH, kW, in) as torch's (out, in, kD, kH, kW)."""
    return conv.weight.permute(0, 4, 1, 2, 3).contiguous()


def test_installed_and_idempotent() -> None:
    from spconv.pytorch.conv import SparseConvolutionBase
    assert spconv_cpu_dispatch_installed()
    before = SparseConvolutionBase._conv_forward
    assert install_spconv_cpu_dispatch()
    assert SparseConvolutionBase._conv_forward is before


def test_submanifold_conv_on_cpu_matches_dense_conv() -> None:
    torch.manual_seed(0)
    conv = SubMConv3d(4, 5, 3, padding=1, bias=True, indice_key='subm')
    built_algo = conv.algo
    # The CUDA build of spconv picks an implicit-GEMM algorithm, which cannot run on CPU.
    assert built_algo != ConvAlgo.Native
    x = _sparse_input()
    out = conv(x)
    assert conv.algo == built_algo  # restored after the CPU call
    dense = F.conv3d(x.dense(), _dense_weight(conv), conv.bias, padding=1)
    idx = x.indices.long()
    expected = dense[idx[:, 0], :, idx[:, 1], idx[:, 2], idx[:, 3]]
    assert torch.equal(out.indices, x.indices)
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


def test_strided_and_inverse_conv_with_backward_on_cpu() -> None:
    torch.manual_seed(0)
    down = SparseConv3d(4, 6, 2, stride=2, bias=False, indice_key='down')
    up = SparseInverseConv3d(6, 4, 2, indice_key='down', bias=False)
    x = _sparse_input(seed=1)
    x.features.requires_grad_(True)
    y = down(x)
    dense = F.conv3d(x.dense(), _dense_weight(down), stride=2)
    torch.testing.assert_close(y.dense(), dense, atol=1e-5, rtol=1e-5)
    z = up(y)
    assert torch.equal(z.indices, x.indices)  # the inverse conv restores the input sites
    z.features.square().sum().backward()
    assert x.features.grad is not None and down.weight.grad is not None
    assert float(down.weight.grad.abs().sum()) > 0 and float(up.weight.grad.abs().sum()) > 0


def test_max_pool_on_cpu_matches_dense_pool() -> None:
    pool = SparseMaxPool3d(2, 2)
    x = _sparse_input(seed=2)
    x = x.replace_feature(x.features.abs() + 0.1)  # empty sites are 0 in the dense reference
    out = pool(x)
    torch.testing.assert_close(out.dense(), F.max_pool3d(x.dense(), 2, 2))


@pytest.mark.gpu
def test_cuda_keeps_implicit_gemm_and_agrees_with_cpu() -> None:
    torch.manual_seed(0)
    conv = SubMConv3d(4, 5, 3, padding=1, indice_key='subm')
    x = _sparse_input(seed=3)
    cpu_out = conv(x).features
    conv = conv.cuda()
    xc = SparseConvTensor(x.features.cuda(), x.indices.cuda(), x.spatial_shape, x.batch_size)
    gpu_out = conv(xc)
    assert conv.algo != ConvAlgo.Native
    assert gpu_out.find_indice_pair('subm').algo == conv.algo  # CUDA used the built algorithm
    torch.testing.assert_close(gpu_out.features.cpu(), cpu_out, atol=1e-4, rtol=1e-4)
