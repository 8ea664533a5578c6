"""Numba row kernels for grouping, gather_points and three_interpolate (forward and backward).

Features are viewed as rows ``(B * C, N)``; every kernel gives one row to one thread, so the
backward scatters accumulate into a row no other thread touches: no atomics, deterministic
sums, and the destination row stays in cache. Each kernel has a ``_serial`` twin (see
``cpu_point_ops._kernel``).
"""
from numba import njit, prange


@njit(cache=True)
def _gather_rows_item(r, src, idx, channels, out):
    ids = idx[r // channels]
    s = src[r]
    o = out[r]
    for t in range(ids.shape[0]):
        o[t] = s[ids[t]]


@njit(cache=True, parallel=True)
def gather_rows(src, idx, channels, out):
    """``out[b * C + c, t] = src[b * C + c, idx[b, t]]`` for rows (B * C, N) and idx (B, K)."""
    for r in prange(src.shape[0]):
        _gather_rows_item(r, src, idx, channels, out)


@njit(cache=True)
def gather_rows_serial(src, idx, channels, out):
    """``gather_rows`` on the calling thread."""
    for r in range(src.shape[0]):
        _gather_rows_item(r, src, idx, channels, out)


@njit(cache=True)
def _scatter_add_rows_item(r, grad_out, idx, channels, grad):
    ids = idx[r // channels]
    g = grad_out[r]
    d = grad[r]
    for t in range(ids.shape[0]):
        d[ids[t]] += g[t]


@njit(cache=True, parallel=True)
def scatter_add_rows(grad_out, idx, channels, grad):
    """``grad[b * C + c, idx[b, t]] += grad_out[b * C + c, t]`` (the gradient of gather_rows)."""
    for r in prange(grad_out.shape[0]):
        _scatter_add_rows_item(r, grad_out, idx, channels, grad)


@njit(cache=True)
def scatter_add_rows_serial(grad_out, idx, channels, grad):
    """``scatter_add_rows`` on the calling thread."""
    for r in range(grad_out.shape[0]):
        _scatter_add_rows_item(r, grad_out, idx, channels, grad)


@njit(cache=True)
def _interpolate_rows_item(r, src, idx, weight, channels, out):
    b = r // channels
    s = src[r]
    o = out[r]
    for n in range(o.shape[0]):
        # CUDA's order: w0 * f0 + w1 * f1 + w2 * f2, in the features' dtype.
        o[n] = (weight[b, n, 0] * s[idx[b, n, 0]] + weight[b, n, 1] * s[idx[b, n, 1]]
                + weight[b, n, 2] * s[idx[b, n, 2]])


@njit(cache=True, parallel=True)
def interpolate_rows(src, idx, weight, channels, out):
    """three_interpolate: rows (B * C, M), idx and weight (B, N, 3) -> out rows (B * C, N)."""
    for r in prange(src.shape[0]):
        _interpolate_rows_item(r, src, idx, weight, channels, out)


@njit(cache=True)
def interpolate_rows_serial(src, idx, weight, channels, out):
    """``interpolate_rows`` on the calling thread."""
    for r in range(src.shape[0]):
        _interpolate_rows_item(r, src, idx, weight, channels, out)


@njit(cache=True)
def _interpolate_rows_backward_item(r, grad_out, idx, weight, channels, grad):
    b = r // channels
    g = grad_out[r]
    d = grad[r]
    for n in range(g.shape[0]):
        for j in range(3):
            d[idx[b, n, j]] += g[n] * weight[b, n, j]


@njit(cache=True, parallel=True)
def interpolate_rows_backward(grad_out, idx, weight, channels, grad):
    """Gradient of ``interpolate_rows`` for the features: rows (B * C, N) -> (B * C, M)."""
    for r in prange(grad_out.shape[0]):
        _interpolate_rows_backward_item(r, grad_out, idx, weight, channels, grad)


@njit(cache=True)
def interpolate_rows_backward_serial(grad_out, idx, weight, channels, grad):
    """``interpolate_rows_backward`` on the calling thread."""
    for r in range(grad_out.shape[0]):
        _interpolate_rows_backward_item(r, grad_out, idx, weight, channels, grad)
