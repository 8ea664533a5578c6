"""Route mmcv's point operators to the CPU kernels when their inputs are CPU tensors.

mmdet3d binds the ops at import (``from mmcv.ops import furthest_point_sample``), so replacing
module attributes afterwards would miss it. The ops are ``torch.autograd.Function`` classes
whose ``.apply`` is what those names hold, and ``apply`` looks ``forward``/``backward`` up on
the class at call time: wrapping those staticmethods with a device test reaches every caller.
CUDA (and any other device) inputs go to mmcv's original methods untouched.

``points_in_boxes_all``/``points_in_boxes_part`` are plain functions that touch
``torch.cuda`` before their kernel; they are replaced by device-dispatching wrappers in mmcv
and in every already-imported module that bound them (e.g. mmdet3d's box structures).
"""
from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.profiler import record_function

from concept_distill.ops import cpu_point_ops as cpu

# Attribute set on patched classes and wrappers: makes installation idempotent.
_MARK = '_concept_distill_cpu_dispatch'
# Profiler label prefix of every CPU point-op region (the benchmark sums these).
PROFILE_PREFIX = 'cpu_point_ops::'


def _first_tensor(args: tuple) -> Tensor | None:
    return next((a for a in args if isinstance(a, Tensor)), None)


def _on_cpu(args: tuple) -> bool:
    t = _first_tensor(args)
    return t is not None and t.device.type == 'cpu'


def _no_stacked_cpu(op: str) -> None:
    raise NotImplementedError(
        f'concept_distill has no CPU kernel for the stacked (batch_cnt) form of mmcv {op}; '
        'use the batched (B, N, 3) form or CUDA tensors.')


# ----------------------------------------------------------------------------------------------
# CPU forward/backward of each mmcv autograd Function (same signatures as mmcv's)
# ----------------------------------------------------------------------------------------------
def _fps_forward(ctx: Any, points_xyz: Tensor, num_points: int) -> Tensor:
    out = cpu.furthest_point_sample(points_xyz, num_points)
    ctx.mark_non_differentiable(out)
    return out


def _fps_dist_forward(ctx: Any, points_dist: Tensor, num_points: int) -> Tensor:
    out = cpu.furthest_point_sample_with_dist(points_dist, num_points)
    ctx.mark_non_differentiable(out)
    return out


def _ball_query_forward(ctx: Any, min_radius: float, max_radius: float, sample_num: int,
                        xyz: Tensor, center_xyz: Tensor, xyz_batch_cnt: Tensor | None = None,
                        center_xyz_batch_cnt: Tensor | None = None) -> Tensor:
    assert min_radius < max_radius
    if xyz_batch_cnt is not None and center_xyz_batch_cnt is not None:
        _no_stacked_cpu('ball_query')
    out = cpu.ball_query(min_radius, max_radius, sample_num, xyz, center_xyz)
    ctx.mark_non_differentiable(out)
    return out


def _grouping_forward(ctx: Any, features: Tensor, indices: Tensor,
                      features_batch_cnt: Tensor | None = None,
                      indices_batch_cnt: Tensor | None = None) -> Tensor:
    if features_batch_cnt is not None and indices_batch_cnt is not None:
        _no_stacked_cpu('grouping_operation')
    ctx.save_for_backward(indices)
    ctx.cd_n = features.shape[2]
    ctx.cd_num_inputs = 2 + (features_batch_cnt is not None) + (indices_batch_cnt is not None)
    return cpu.group_points(features, indices)


def _grouping_backward(ctx: Any, grad_out: Tensor) -> tuple:
    (indices,) = ctx.saved_tensors
    grad = cpu.group_points_backward(grad_out.contiguous(), indices, ctx.cd_n)
    return (grad,) + (None,) * (ctx.cd_num_inputs - 1)


def _gather_forward(ctx: Any, features: Tensor, indices: Tensor) -> Tensor:
    ctx.save_for_backward(indices)
    ctx.cd_n = features.shape[2]
    ctx.mark_non_differentiable(indices)
    return cpu.gather_points(features, indices)


def _gather_backward(ctx: Any, grad_out: Tensor) -> tuple:
    (indices,) = ctx.saved_tensors
    return cpu.gather_points_backward(grad_out.contiguous(), indices, ctx.cd_n), None


def _three_nn_forward(ctx: Any, target: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    dist, idx = cpu.three_nn(target, source)
    ctx.mark_non_differentiable(idx)
    return dist, idx


def _three_interpolate_forward(ctx: Any, features: Tensor, indices: Tensor,
                               weight: Tensor) -> Tensor:
    ctx.save_for_backward(indices, weight)
    ctx.cd_m = features.shape[2]
    return cpu.three_interpolate(features, indices, weight)


def _three_interpolate_backward(ctx: Any, grad_out: Tensor) -> tuple:
    indices, weight = ctx.saved_tensors
    grad = cpu.three_interpolate_backward(grad_out.contiguous(), indices, weight, ctx.cd_m)
    return grad, None, None


def _knn_forward(ctx: Any, k: int, xyz: Tensor, center_xyz: Tensor | None = None,
                 transposed: bool = False) -> Tensor:
    assert (k > 0) & (k < 100), 'k should be in range(0, 100)'
    if center_xyz is None:
        center_xyz = xyz
    if transposed:
        xyz = xyz.transpose(2, 1)
        center_xyz = center_xyz.transpose(2, 1)
    idx = cpu.knn(k, xyz, center_xyz).transpose(2, 1).contiguous()
    ctx.mark_non_differentiable(idx)
    return idx


# (module, class) -> (profiler label, CPU forward, CPU backward or None where mmcv's backward
# only returns Nones and so works on any device)
_FUNCTIONS: dict[tuple[str, str], tuple[str, Callable, Callable | None]] = {
    ('mmcv.ops.furthest_point_sample', 'FurthestPointSampling'):
        ('furthest_point_sample', _fps_forward, None),
    ('mmcv.ops.furthest_point_sample', 'FurthestPointSamplingWithDist'):
        ('furthest_point_sample_with_dist', _fps_dist_forward, None),
    ('mmcv.ops.ball_query', 'BallQuery'): ('ball_query', _ball_query_forward, None),
    ('mmcv.ops.group_points', 'GroupingOperation'):
        ('grouping_operation', _grouping_forward, _grouping_backward),
    ('mmcv.ops.gather_points', 'GatherPoints'):
        ('gather_points', _gather_forward, _gather_backward),
    ('mmcv.ops.three_nn', 'ThreeNN'): ('three_nn', _three_nn_forward, None),
    ('mmcv.ops.three_interpolate', 'ThreeInterpolate'):
        ('three_interpolate', _three_interpolate_forward, _three_interpolate_backward),
    ('mmcv.ops.knn', 'KNN'): ('knn', _knn_forward, None),
}

_PLAIN_FUNCTIONS: dict[tuple[str, str], Callable] = {
    ('mmcv.ops.points_in_boxes', 'points_in_boxes_all'): cpu.points_in_boxes_all,
    ('mmcv.ops.points_in_boxes', 'points_in_boxes_part'): cpu.points_in_boxes_part,
}


def _patch_function_class(cls: type, cpu_forward: Callable, cpu_backward: Callable | None,
                          label: str) -> None:
    """Wrap ``cls.forward`` (and ``cls.backward``) with a dispatch on the inputs' device."""
    if getattr(cls, _MARK, False):
        return
    orig_forward = cls.forward
    orig_backward = cls.backward

    @functools.wraps(orig_forward)
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        if _on_cpu(args) or _on_cpu(tuple(kwargs.values())):
            ctx.cd_on_cpu = True
            with record_function(PROFILE_PREFIX + label):
                return cpu_forward(ctx, *args, **kwargs)
        return orig_forward(ctx, *args, **kwargs)

    cls.forward = staticmethod(forward)
    if cpu_backward is not None:
        @functools.wraps(orig_backward)
        def backward(ctx: Any, *grads: Any) -> Any:
            if getattr(ctx, 'cd_on_cpu', False):
                with record_function(PROFILE_PREFIX + label + '_backward'):
                    return cpu_backward(ctx, *grads)
            return orig_backward(ctx, *grads)

        cls.backward = staticmethod(backward)
    setattr(cls, _MARK, (orig_forward, orig_backward))


def _dispatching(orig: Callable, cpu_fn: Callable, label: str) -> Callable:
    """A wrapper of ``orig`` that runs ``cpu_fn`` for CPU tensors."""

    @functools.wraps(orig)
    def wrapper(points: Tensor, boxes: Tensor) -> Tensor:
        if points.device.type != 'cpu':
            return orig(points, boxes)
        # mmcv's own shape checks, before any work.
        assert points.shape[0] == boxes.shape[0], \
            'Points and boxes should have the same batch size, ' \
            f'but got {points.shape[0]} and {boxes.shape[0]}'
        assert boxes.shape[2] == 7, \
            f'boxes dimension should be 7, but got unexpected shape {boxes.shape[2]}'
        assert points.shape[2] == 3, \
            f'points dimension should be 3, but got unexpected shape {points.shape[2]}'
        assert boxes.device.type == 'cpu', 'Points and boxes should be put on the same device'
        with record_function(PROFILE_PREFIX + label):
            return cpu_fn(points, boxes)

    setattr(wrapper, _MARK, True)
    return wrapper


def _rebind_everywhere(orig: Callable, new: Callable) -> None:
    """Replace every module-level binding of ``orig`` (``from mmcv.ops import f``) by ``new``."""
    for module in list(sys.modules.values()):
        try:
            namespace = vars(module)
        except TypeError:  # not a real module (some packages put proxies in sys.modules)
            continue
        for name, value in list(namespace.items()):
            if value is orig:
                namespace[name] = new


def install() -> None:
    """Install the CPU dispatch for mmcv's point operators (idempotent)."""
    for (module_name, cls_name), (label, cpu_forward, cpu_backward) in _FUNCTIONS.items():
        cls = getattr(importlib.import_module(module_name), cls_name)
        _patch_function_class(cls, cpu_forward, cpu_backward, label)
    for (module_name, fn_name), cpu_fn in _PLAIN_FUNCTIONS.items():
        orig = getattr(importlib.import_module(module_name), fn_name)
        if not getattr(orig, _MARK, False):
            _rebind_everywhere(orig, _dispatching(orig, cpu_fn, fn_name))


def installed() -> bool:
    """Whether the CPU dispatch is in place (for tests and diagnostics)."""
    fps = importlib.import_module('mmcv.ops.furthest_point_sample').FurthestPointSampling
    boxes = importlib.import_module('mmcv.ops.points_in_boxes')
    return all(getattr(f, _MARK, False)
               for f in (fps, boxes.points_in_boxes_all, boxes.points_in_boxes_part))
