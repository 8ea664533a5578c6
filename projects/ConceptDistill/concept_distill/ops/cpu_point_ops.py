"""CPU implementations of mmcv's point operators, with the semantics of mmcv's CUDA kernels.

Each function takes and returns CPU tensors with the shapes and dtypes of the mmcv op it
replaces (indices are int32). The work runs in the numba kernels of ``ops/kernels/``:
``sampling`` (furthest point sampling), ``neighbours`` (ball query, three_nn, knn),
``gathers`` (grouping, gather_points, three_interpolate and their gradients) and ``boxes``;
half-precision features fall back to torch gathers.
"""
from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

# Cap of grid cells per point: keeps the neighbour grids' memory linear in the cloud size.
_CELLS_PER_POINT = 4
# Below this many point-pairs a brute-force scan beats building a grid.
_BRUTE_FORCE_PAIRS = 1 << 18
# Kernels with less work than this (elementary steps) run on one thread.
_PARALLEL_WORK = 1 << 20
# Points per leaf in furthest point sampling (leaves far from a new sample are skipped).
_FPS_LEAF = 64

_KERNEL_MODULES = ('sampling', 'neighbours', 'gathers', 'boxes')
_kernels: dict[str, Callable] = {}
# The process that started numba's OpenMP thread team. GNU OpenMP cannot be used again in a
# process forked after that (numba terminates the child), so forked children such as
# DataLoader workers run the serial kernels.
_omp_pid: int | None = None


def _kernel(name: str, work: float) -> Callable:
    """The numba kernel ``name`` for about ``work`` elementary steps: parallel or serial.

    Parallel on as many threads as torch uses (the caller's thread budget) when there is
    enough work to pay for waking a thread team (far more so on an oversubscribed machine) and
    the process may use OpenMP; otherwise its ``_serial`` twin, on the calling thread.
    """
    global _omp_pid
    if not _kernels:
        # Imported on first use so that `import concept_distill` stays fast (numba is slow
        # to import).
        for module_name in _KERNEL_MODULES:
            module = importlib.import_module(f'{__package__}.kernels.{module_name}')
            _kernels.update((k, v) for k, v in vars(module).items() if not k.startswith('_'))
    import numba
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    pid = os.getpid()
    if threads > 1 and work >= _PARALLEL_WORK and _omp_pid in (None, pid):
        _omp_pid = pid
        numba.set_num_threads(threads)
        return _kernels[name]
    return _kernels[name + '_serial']


def _coords(t: Tensor) -> np.ndarray:
    """A contiguous float32/float64 numpy view (or copy) of a CPU coordinate tensor."""
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float64):
        # Half / bfloat16 coordinates: neighbour search in float32 (numba has no half type).
        t = t.float()
    return t.contiguous().numpy()


def _cuda_fps_block(n: int) -> int:
    """Threads per block mmcv's FPS launcher picks for n points (decides its tie-breaking)."""
    if n <= 1:
        return 1
    pow_2 = int(math.log(float(n)) / math.log(2.0))
    return max(min(1 << pow_2, 1024), 1)


# ----------------------------------------------------------------------------------------------
# Furthest point sampling
# ----------------------------------------------------------------------------------------------
def furthest_point_sample(points_xyz: Tensor, num_points: int) -> Tensor:
    """(B, N, 3) -> (B, num_points) int32 indices; starts at index 0, as mmcv's CUDA kernel."""
    B, N = points_xyz.shape[:2]
    out = np.zeros((B, num_points), dtype=np.int32)
    if num_points > 0 and N > 0:
        xyz = _coords(points_xyz)
        block = _cuda_fps_block(N)
        if N <= 2 * _FPS_LEAF:
            _kernel('fps_batch', B * N * num_points)(xyz, num_points, block, out)
        else:
            # Leaf skipping leaves a few point updates per sample and point.
            _kernel('fps_batch_bucketed', B * N * 16)(xyz, num_points, block, _FPS_LEAF, out)
    return torch.from_numpy(out)


def furthest_point_sample_with_dist(points_dist: Tensor, num_points: int) -> Tensor:
    """(B, N, N) pairwise distances -> (B, num_points) int32 indices (mmcv semantics)."""
    B, N = points_dist.shape[:2]
    out = np.zeros((B, num_points), dtype=np.int32)
    if num_points > 0 and N > 0:
        _kernel('fps_with_dist_batch', B * N * num_points)(
            _coords(points_dist), num_points, _cuda_fps_block(N), out)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Ball query
# ----------------------------------------------------------------------------------------------
def ball_query(min_radius: float, max_radius: float, sample_num: int, xyz: Tensor,
               center_xyz: Tensor) -> Tensor:
    """(B, N, 3) points, (B, M, 3) centres -> (B, M, sample_num) int32 (mmcv semantics).

    Per centre: the first ``sample_num`` points in index order with ``d2 == 0`` or
    ``min_radius**2 <= d2 < max_radius**2``; a short ball is padded with its first index, an
    empty one gives index 0. Memory is linear in the points: one grid per cloud, no
    centres x points matrix.
    """
    B, N = xyz.shape[:2]
    M = center_xyz.shape[1]
    out = np.zeros((B, M, sample_num), dtype=np.int32)
    if sample_num <= 0 or N == 0 or M == 0:
        return torch.from_numpy(out)
    pts = _coords(xyz)
    ctr = _coords(center_xyz).astype(pts.dtype, copy=False)
    # mmcv squares the radii in float32 (`float max_radius2 = max_radius * max_radius`).
    min_r2 = np.float32(min_radius) * np.float32(min_radius)
    max_r2 = np.float32(max_radius) * np.float32(max_radius)
    # The cell scan must cover every point the float32 test can accept; pad the reach a little.
    reach = float(np.sqrt(np.float64(max_r2))) * (1.0 + 1e-5) + 1e-7
    grids = _kernel('build_grids', B * N)(pts, np.full(B, reach), max(_CELLS_PER_POINT * N, 64))
    # Roughly: each centre scans up to 27 cells, stopping early once it holds sample_num.
    _kernel('ball_query_grid', B * M * 27 * max(sample_num, N // max(M, 1)))(
        ctr, min_r2, max_r2, reach, sample_num, *grids, out)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Nearest neighbours
# ----------------------------------------------------------------------------------------------
def _topk(queries: np.ndarray, pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest of (B, M, 3) queries in (B, N, 3) points, by (distance, index).

    Brute force for small clouds, else a search of grid shells (same result).
    """
    B, M, N = queries.shape[0], queries.shape[1], pts.shape[1]
    out_d = np.empty((B, M, k), dtype=pts.dtype)
    out_i = np.empty((B, M, k), dtype=np.int64)
    if M * N <= _BRUTE_FORCE_PAIRS or 4 * k >= N:
        _kernel('topk_brute', B * M * N)(queries, pts, out_d, out_i)
    else:
        # Cells of about k points (if the cloud filled its box): a few shells hold the k nearest.
        extent = np.maximum(pts.max(1).astype(np.float64) - pts.min(1), 1e-6)
        sides = (np.prod(extent, axis=1) * max(k, 2) / N) ** (1.0 / 3.0)
        grids = _kernel('build_grids', B * N)(pts, sides, max(_CELLS_PER_POINT * N, 64))
        _kernel('topk_grid', B * M * 64 * k)(queries, *grids, out_d, out_i)
    return out_d, out_i


def three_nn(target: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 3) targets, (B, M, 3) sources -> distances (B, N, 3), int32 indices (B, N, 3).

    The three nearest in (distance, index) order, as mmcv's strict-less insertion; with fewer
    than three sources the missing slots hold index 0 and distance sqrt(1e40 cast to dtype).
    """
    B, N = target.shape[:2]
    dtype = target.dtype
    if N == 0:
        return torch.empty((B, 0, 3), dtype=dtype), torch.zeros((B, 0, 3), dtype=torch.int32)
    tgt = _coords(target)
    src = _coords(source).astype(tgt.dtype, copy=False)
    d, i = _topk(tgt, src, 3)
    missing = i >= src.shape[1]
    idx = torch.from_numpy(np.where(missing, 0, i).astype(np.int32))
    if dtype in (torch.float32, torch.float64):
        # mmcv keeps a double 1e40 for a missing neighbour and stores it in the output dtype
        # (inf in float32: 1e40 overflows it). numpy's sqrt is correctly rounded, like CUDA's
        # sqrtf; torch's vectorised CPU sqrt can be one ulp off.
        d[missing] = np.inf if d.dtype == np.float32 else 1e40
        return torch.from_numpy(np.sqrt(d)), idx
    dist2 = torch.from_numpy(d).to(dtype)
    dist2[torch.from_numpy(missing)] = torch.tensor(1e40, dtype=torch.float64).to(dtype)
    return torch.sqrt(dist2), idx


def knn(k: int, xyz: Tensor, center_xyz: Tensor) -> Tensor:
    """(B, N, 3) points, (B, M, 3) centres -> (B, M, k) int32, as mmcv's heap kNN (untransposed).

    The result is the k nearest sorted by distance. Where float32 distances tie (or the cloud
    has fewer than k points) the order of mmcv's heap is not a sort order, so those rows are
    recomputed by an exact emulation of the CUDA heap.
    """
    B, N = xyz.shape[:2]
    M = center_xyz.shape[1]
    out = np.zeros((B, M, k), dtype=np.int32)
    if M == 0:
        return torch.from_numpy(out)
    pts = _coords(xyz)
    ctr = _coords(center_xyz).astype(pts.dtype, copy=False)
    if k >= N:
        tied = np.ones((B, M), dtype=bool)
    else:
        # One extra neighbour shows whether the k-th distance ties with the next.
        d, i = _topk(ctr, pts, k + 1)
        d32 = d.astype(np.float32)
        tied = (d32[..., 1:] == d32[..., :-1]).any(axis=-1)
        out[:] = i[..., :k]
    rows = np.argwhere(tied).astype(np.int64)
    if len(rows):
        _kernel('knn_heap_rows', len(rows) * N)(ctr, pts, rows, k, out)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Gathers and their gradients: one row (b, c) per thread, deterministic accumulation
# ----------------------------------------------------------------------------------------------
def _numba_dtype(t: Tensor) -> bool:
    return t.dtype in (torch.float32, torch.float64)


def _rows(t: Tensor) -> np.ndarray:
    """(B, C, ...) tensor -> contiguous (B * C, prod(...)) numpy array (a view when possible)."""
    return t.detach().contiguous().reshape(t.shape[0] * t.shape[1], -1).numpy()


def _index_rows(indices: Tensor, n: int, keep_last: bool = False) -> np.ndarray:
    """Indices as a contiguous int32/int64 numpy array (B, K) (or (B, N, 3)), checked < n.

    The CUDA kernels do not check; an out-of-range index there reads garbage, here it would
    crash the process, so it raises like ``torch.gather`` does.
    """
    idx = indices.detach()
    if not keep_last:
        idx = idx.reshape(idx.shape[0], -1)
    if idx.dtype not in (torch.int32, torch.int64):
        idx = idx.long()
    idx = idx.contiguous().numpy()
    # numpy's single-threaded min/max: cheaper here than waking torch's thread team.
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f'point index out of range [0, {n}): min {idx.min()}, max {idx.max()}')
    return idx


def _flat_index(indices: Tensor, channels: int) -> Tensor:
    """(B, ...) integer indices -> (B, C, prod(...)) int64, broadcast over C without a copy."""
    flat = indices.reshape(indices.shape[0], 1, -1).long().contiguous()
    return flat.expand(-1, channels, -1)


def _gather(features: Tensor, indices: Tensor) -> Tensor:
    """(B, C, N), (B, ...) -> (B, C, K) with K = prod(...)."""
    B, C, N = features.shape
    if not _numba_dtype(features):
        return torch.gather(features, 2, _flat_index(indices, C))
    idx = _index_rows(indices, N)
    out = np.empty((B * C, idx.shape[1]), dtype=_rows(features).dtype)
    _kernel('gather_rows', out.size)(_rows(features), idx, C, out)
    return torch.from_numpy(out).view(B, C, -1)


def _gather_backward(grad_out: Tensor, indices: Tensor, n: int) -> Tensor:
    """(B, C, ...) gradient of ``_gather`` -> (B, C, n)."""
    B, C = grad_out.shape[:2]
    if not _numba_dtype(grad_out):
        grad = grad_out.new_zeros((B, C, n))
        return grad.scatter_add_(2, _flat_index(indices, C), grad_out.reshape(B, C, -1))
    rows = _rows(grad_out)
    grad = np.zeros((B * C, n), dtype=rows.dtype)
    _kernel('scatter_add_rows', rows.size)(rows, _index_rows(indices, n), C, grad)
    return torch.from_numpy(grad).view(B, C, n)


def group_points(features: Tensor, indices: Tensor) -> Tensor:
    """(B, C, N) features, (B, M, S) indices -> (B, C, M, S)."""
    return _gather(features, indices).view(*features.shape[:2], *indices.shape[1:])


def group_points_backward(grad_out: Tensor, indices: Tensor, n: int) -> Tensor:
    """(B, C, M, S) gradient -> (B, C, N) gradient of the grouped features."""
    return _gather_backward(grad_out, indices, n)


def gather_points(features: Tensor, indices: Tensor) -> Tensor:
    """(B, C, N) features, (B, M) indices -> (B, C, M)."""
    return _gather(features, indices)


def gather_points_backward(grad_out: Tensor, indices: Tensor, n: int) -> Tensor:
    """(B, C, M) gradient -> (B, C, N)."""
    return _gather_backward(grad_out, indices, n)


def three_interpolate(features: Tensor, indices: Tensor, weight: Tensor) -> Tensor:
    """(B, C, M) features, (B, N, 3) indices and weights -> (B, C, N) weighted sums.

    Summed as CUDA does, ``w0 * f0 + w1 * f1 + w2 * f2``, in one pass without a
    (B, C, N, 3) temporary.
    """
    B, C, M = features.shape
    N = indices.shape[1]
    if not _numba_dtype(features):
        idx = indices.long().permute(2, 0, 1).contiguous()
        # bf16 features under CPU autocast meet fp32 weights: compute in the features' dtype
        w = weight.to(features.dtype).permute(2, 0, 1).contiguous()
        out = None
        for j in range(3):
            term = torch.gather(features, 2, _flat_index(idx[j], C)).mul_(w[j][:, None, :])
            out = term if out is None else out.add_(term)
        return out
    src = _rows(features)
    w = weight.detach().to(features.dtype).contiguous().numpy()
    out = np.empty((B * C, N), dtype=src.dtype)
    _kernel('interpolate_rows', out.size * 3)(src, _index_rows(indices, M, keep_last=True), w,
                                              C, out)
    return torch.from_numpy(out).view(B, C, N)


def three_interpolate_backward(grad_out: Tensor, indices: Tensor, weight: Tensor,
                               m: int) -> Tensor:
    """(B, C, N) gradient -> (B, C, M) gradient of the features (weights get none, as mmcv)."""
    B, C = grad_out.shape[:2]
    if not _numba_dtype(grad_out):
        idx = indices.long().permute(2, 0, 1).contiguous()
        # scatter_add_ needs one dtype: fp32 weights would promote a bf16 gradient
        w = weight.to(grad_out.dtype).permute(2, 0, 1).contiguous()
        grad = grad_out.new_zeros((B, C, m))
        for j in range(3):
            grad.scatter_add_(2, _flat_index(idx[j], C), grad_out * w[j][:, None, :])
        return grad
    rows = _rows(grad_out)
    w = weight.detach().to(grad_out.dtype).contiguous().numpy()
    grad = np.zeros((B * C, m), dtype=rows.dtype)
    _kernel('interpolate_rows_backward', rows.size * 3)(
        rows, _index_rows(indices, m, keep_last=True), w, C, grad)
    return torch.from_numpy(grad).view(B, C, m)


# ----------------------------------------------------------------------------------------------
# Points in boxes
# ----------------------------------------------------------------------------------------------
def _points_in_boxes(points: Tensor, boxes: Tensor, want_all: bool) -> tuple[Tensor, Tensor]:
    """Run the numba box test with the box parameters rounded as mmcv's CUDA kernel does."""
    B, M = points.shape[:2]
    T = boxes.shape[1]
    pts = _coords(points)
    bx = boxes.detach().to(torch.float64).numpy()
    dtype = pts.dtype
    centre = np.empty((B, T, 3), dtype=dtype)
    centre[..., :2] = bx[..., :2]
    # CUDA: `cz += z_size / 2.0` in double, stored back into the float box centre.
    centre[..., 2] = bx[..., 2] + bx[..., 5] / 2.0
    half = bx[..., 3:6] / 2.0
    rz = (-bx[..., 6]).astype(dtype)
    cosa, sina = np.cos(rz), np.sin(rz)
    out_all = np.zeros((B, M, T) if want_all else (1, 1, 1), dtype=np.int32)
    out_part = np.full((B, M), -1, dtype=np.int32)
    if M and T:
        _kernel('points_in_boxes', B * M * T)(pts, centre, half, cosa, sina, want_all, out_all,
                                              out_part)
    return torch.from_numpy(out_all), torch.from_numpy(out_part)


def points_in_boxes_all(points: Tensor, boxes: Tensor) -> Tensor:
    """(B, M, 3) points, (B, T, 7) boxes -> (B, M, T) int32, 1 where a point is in a box.

    Boxes are (x, y, z, x_size, y_size, z_size, yaw) with z the bottom centre; a point is
    inside when |z - zc| <= z_size / 2 and strictly inside the yawed rectangle, as mmcv's CUDA.
    """
    return _points_in_boxes(points, boxes, want_all=True)[0]


def points_in_boxes_part(points: Tensor, boxes: Tensor) -> Tensor:
    """(B, M, 3) points, (B, T, 7) boxes -> (B, M) int32: first box holding a point, or -1."""
    return _points_in_boxes(points, boxes, want_all=False)[1]
