"""CPU implementations of mmcv's point operators, with the semantics of mmcv's CUDA kernels.

Each function takes and returns CPU tensors with the shapes and dtypes of the mmcv op it
replaces (indices are int32). Neighbour searches and furthest point sampling run in numba
kernels (``numba_point_kernels``); gathers, scatters and box tests are vectorised torch.
"""
from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

# Cap of grid cells per point: keeps the neighbour grids' memory linear in the cloud size.
_CELLS_PER_POINT = 4
# Below this many point-pairs a brute-force scan beats building a grid.
_BRUTE_FORCE_PAIRS = 1 << 18
# Points tested against all boxes at once in points_in_boxes (bounds the (M, T) temporaries).
_BOX_CHUNK = 1 << 16

_kernels: ModuleType | None = None


def _k() -> ModuleType:
    """The numba kernels, imported on first use so `import concept_distill` stays fast."""
    global _kernels
    if _kernels is None:
        from . import numba_point_kernels
        _kernels = numba_point_kernels
    return _kernels


def _threads() -> int:
    """Use as many numba threads as torch does (the caller's thread budget)."""
    import numba
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


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
        threads = _threads()
        if threads <= B or N < 4096:
            _k().fps_batch(xyz, num_points, block, out)
        else:
            # Small batch, big cloud (inference): parallelise each iteration's scan instead.
            for b in range(B):
                _k().fps_single_chunked(xyz[b], num_points, block, threads, out[b])
    return torch.from_numpy(out)


def furthest_point_sample_with_dist(points_dist: Tensor, num_points: int) -> Tensor:
    """(B, N, N) pairwise distances -> (B, num_points) int32 indices (mmcv semantics)."""
    B, N = points_dist.shape[:2]
    out = np.zeros((B, num_points), dtype=np.int32)
    if num_points > 0 and N > 0:
        _threads()
        _k().fps_with_dist_batch(_coords(points_dist), num_points, _cuda_fps_block(N), out)
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
    _threads()
    kernels = _k()
    for b in range(B):
        grid = kernels.build_grid(pts[b], reach, max(_CELLS_PER_POINT * N, 64))
        kernels.ball_query_grid(ctr[b], min_r2, max_r2, reach, sample_num, *grid, out[b])
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Nearest neighbours
# ----------------------------------------------------------------------------------------------
def _topk(queries: np.ndarray, pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest of each query in (distance, index) order: brute force or grid shells."""
    M, N = queries.shape[0], pts.shape[0]
    out_d = np.empty((M, k), dtype=pts.dtype)
    out_i = np.empty((M, k), dtype=np.int64)
    kernels = _k()
    if M * N <= _BRUTE_FORCE_PAIRS or 4 * k >= N:
        kernels.topk_brute(queries, pts, out_d, out_i)
    else:
        # About k points per cell: a few shells hold the k nearest.
        extent = np.maximum(pts.max(0).astype(np.float64) - pts.min(0), 1e-6)
        side = float((np.prod(extent) * max(k, 2) / N) ** (1.0 / 3.0))
        grid = kernels.build_grid(pts, side, max(_CELLS_PER_POINT * N, 64))
        kernels.topk_grid(queries, *grid, out_d, out_i)
    return out_d, out_i


def three_nn(target: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 3) targets, (B, M, 3) sources -> distances (B, N, 3), int32 indices (B, N, 3).

    The three nearest in (distance, index) order, as mmcv's strict-less insertion; with fewer
    than three sources the missing slots hold index 0 and distance sqrt(1e40 cast to dtype).
    """
    B, N = target.shape[:2]
    dtype = target.dtype
    dist2 = torch.empty((B, N, 3), dtype=dtype)
    idx = torch.zeros((B, N, 3), dtype=torch.int32)
    if N == 0:
        return dist2, idx
    tgt = _coords(target)
    src = _coords(source).astype(tgt.dtype, copy=False)
    _threads()
    for b in range(B):
        d, i = _topk(tgt[b], src[b], 3)
        missing = i >= src.shape[1]
        i[missing] = 0
        d = torch.from_numpy(d).to(dtype)
        # mmcv keeps its double 1e40 sentinel and stores it in the output dtype (inf in float32).
        d[torch.from_numpy(missing)] = torch.tensor(1e40, dtype=torch.float64).to(dtype)
        dist2[b] = d
        idx[b] = torch.from_numpy(i.astype(np.int32))
    if dtype in (torch.float32, torch.float64):
        # numpy's sqrt is correctly rounded, like CUDA's sqrtf; torch's vectorised CPU sqrt
        # can be one ulp off.
        return torch.from_numpy(np.sqrt(dist2.numpy())), idx
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
    _threads()
    kernels = _k()
    for b in range(B):
        if k >= N:
            rows = np.arange(M, dtype=np.int64)
        else:
            # One extra neighbour shows whether the k-th distance ties with the next.
            d, i = _topk(ctr[b], pts[b], k + 1)
            d32 = d.astype(np.float32)
            tied = (d32[:, 1:] == d32[:, :-1]).any(axis=1)
            out[b] = i[:, :k]
            rows = np.nonzero(tied)[0].astype(np.int64)
        if rows.size:
            kernels.knn_heap_rows(ctr[b], pts[b], rows, k, out[b])
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------
# Gathers and their gradients (vectorised torch; gradients accumulate like CUDA's atomicAdd)
# ----------------------------------------------------------------------------------------------
def _flat_index(indices: Tensor, channels: int) -> Tensor:
    """(B, ...) integer indices -> (B, C, prod(...)) int64, broadcast over C without a copy."""
    flat = indices.reshape(indices.shape[0], 1, -1).long()
    return flat.expand(-1, channels, -1)


def group_points(features: Tensor, indices: Tensor) -> Tensor:
    """(B, C, N) features, (B, M, S) indices -> (B, C, M, S)."""
    B, C = features.shape[:2]
    out = torch.gather(features, 2, _flat_index(indices, C))
    return out.view(B, C, *indices.shape[1:])


def group_points_backward(grad_out: Tensor, indices: Tensor, n: int) -> Tensor:
    """(B, C, M, S) gradient -> (B, C, N) gradient of the grouped features."""
    B, C = grad_out.shape[:2]
    grad = grad_out.new_zeros((B, C, n))
    grad.scatter_add_(2, _flat_index(indices, C), grad_out.reshape(B, C, -1))
    return grad


def gather_points(features: Tensor, indices: Tensor) -> Tensor:
    """(B, C, N) features, (B, M) indices -> (B, C, M)."""
    return torch.gather(features, 2, _flat_index(indices, features.shape[1]))


def gather_points_backward(grad_out: Tensor, indices: Tensor, n: int) -> Tensor:
    """(B, C, M) gradient -> (B, C, N)."""
    B, C = grad_out.shape[:2]
    grad = grad_out.new_zeros((B, C, n))
    grad.scatter_add_(2, _flat_index(indices, C), grad_out)
    return grad


def three_interpolate(features: Tensor, indices: Tensor, weight: Tensor) -> Tensor:
    """(B, C, M) features, (B, N, 3) indices and weights -> (B, C, N) weighted sums.

    Summed as CUDA does, ``w0 * f0 + w1 * f1 + w2 * f2``, one neighbour at a time so the
    peak memory is two (B, C, N) tensors rather than a (B, C, N, 3) one.
    """
    C = features.shape[1]
    out = None
    for j in range(3):
        term = torch.gather(features, 2, _flat_index(indices[:, :, j], C))
        term = term * weight[:, None, :, j]
        out = term if out is None else out.add_(term)
    return out


def three_interpolate_backward(grad_out: Tensor, indices: Tensor, weight: Tensor,
                               m: int) -> Tensor:
    """(B, C, N) gradient -> (B, C, M) gradient of the features (weights get none, as mmcv)."""
    B, C = grad_out.shape[:2]
    grad = grad_out.new_zeros((B, C, m))
    for j in range(3):
        grad.scatter_add_(2, _flat_index(indices[:, :, j], C), grad_out * weight[:, None, :, j])
    return grad


# ----------------------------------------------------------------------------------------------
# Points in boxes
# ----------------------------------------------------------------------------------------------
def _in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """(M, 3) points, (T, 7) bottom-centred yawed boxes -> (M, T) bool, mmcv's CUDA test."""
    cx, cy, cz, xs, ys, zs, rz = boxes.unbind(-1)
    cz = cz + zs / 2  # the boxes' z is the bottom centre
    x, y, z = points[:, 0:1], points[:, 1:2], points[:, 2:3]
    inside = ~((z - cz).abs() > zs / 2)
    cosa, sina = torch.cos(-rz), torch.sin(-rz)
    sx, sy = x - cx, y - cy
    lx = sx * cosa + sy * (-sina)
    ly = sx * sina + sy * cosa
    inside &= (lx > -xs / 2) & (lx < xs / 2)
    inside &= (ly > -ys / 2) & (ly < ys / 2)
    return inside


def points_in_boxes_all(points: Tensor, boxes: Tensor) -> Tensor:
    """(B, M, 3) points, (B, T, 7) boxes -> (B, M, T) int32, 1 where a point is in a box."""
    B, M = points.shape[:2]
    T = boxes.shape[1]
    out = torch.zeros((B, M, T), dtype=torch.int32)
    for b in range(B):
        for s in range(0, M, _BOX_CHUNK):
            out[b, s:s + _BOX_CHUNK] = _in_boxes(points[b, s:s + _BOX_CHUNK], boxes[b]).int()
    return out


def points_in_boxes_part(points: Tensor, boxes: Tensor) -> Tensor:
    """(B, M, 3) points, (B, T, 7) boxes -> (B, M) int32: first box holding a point, or -1."""
    B, M = points.shape[:2]
    out = torch.full((B, M), -1, dtype=torch.int32)
    if boxes.shape[1] == 0:
        return out
    for b in range(B):
        for s in range(0, M, _BOX_CHUNK):
            inside = _in_boxes(points[b, s:s + _BOX_CHUNK], boxes[b])
            first = inside.int().argmax(dim=1).int()  # argmax returns the first maximum
            out[b, s:s + _BOX_CHUNK] = torch.where(inside.any(dim=1), first, -1)
    return out
