"""Numba furthest point sampling with the semantics of mmcv's CUDA kernels.

Distances are ``(a - b) * (a - b)`` summed over x, y, z in the input's dtype, the first sample
is index 0, and ties are broken as CUDA's block reduction does (see ``_cuda_tie_key_wins``), so
CPU and CUDA pick the same indices. Each parallel kernel (over the batch) has a ``_serial``
twin (see ``cpu_point_ops._kernel``). Compiled lazily on first call and cached on disk.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline='always')
def _cuda_tie_key_wins(k, besti, block):
    """Whether index ``k`` beats ``besti`` among equal distances, as mmcv's block reduction.

    In the CUDA kernel thread ``t`` scans ``k = t, t + block, ...`` keeping its first maximum,
    and the tree reduction keeps the lower thread on ties: the winner is the smallest
    ``(k % block, k)``.
    """
    km = k % block
    bm = besti % block
    return km < bm or (km == bm and k < besti)


@njit(cache=True)
def _fps_resolve_tie(temp, best, block):
    """Index of the CUDA-chosen maximum when ``best`` occurs more than once in ``temp``."""
    besti = -1
    for k in range(temp.shape[0]):
        if temp[k] == best and (besti < 0 or _cuda_tie_key_wins(k, besti, block)):
            besti = k
    return besti


@njit(cache=True)
def _fps_one(x, y, z, m, block, out):
    """Furthest point sampling of one cloud given as coordinate columns (serial)."""
    n = x.shape[0]
    temp = np.full(n, 1e10, dtype=x.dtype)
    old = 0
    out[0] = 0
    for j in range(1, m):
        x1 = x[old]
        y1 = y[old]
        z1 = z[old]
        best = -1.0
        besti = 0
        tie = False
        for k in range(n):
            dx = x[k] - x1
            dy = y[k] - y1
            dz = z[k] - z1
            d = dx * dx + dy * dy + dz * dz
            t = temp[k]
            if d < t:
                t = d
                temp[k] = d
            if t > best:
                best = t
                besti = k
                tie = False
            elif t == best:
                tie = True
        if tie:
            besti = _fps_resolve_tie(temp, best, block)
        old = besti
        out[j] = old


@njit(cache=True)
def _fps_item(b, xyz, m, block, out):
    _fps_one(np.ascontiguousarray(xyz[b, :, 0]), np.ascontiguousarray(xyz[b, :, 1]),
             np.ascontiguousarray(xyz[b, :, 2]), m, block, out[b])


@njit(cache=True, parallel=True)
def fps_batch(xyz, m, block, out):
    """FPS of every cloud of ``xyz`` (B, N, 3) into ``out`` (B, m) int32, parallel over B."""
    for b in prange(xyz.shape[0]):
        _fps_item(b, xyz, m, block, out)


@njit(cache=True)
def fps_batch_serial(xyz, m, block, out):
    """``fps_batch`` on the calling thread."""
    for b in range(xyz.shape[0]):
        _fps_item(b, xyz, m, block, out)


@njit(cache=True, inline='always')
def _spread_bits(v):
    """Interleave the low 10 bits of ``v`` with two zero bits each (for Morton codes)."""
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    v = (v | (v << 2)) & 0x09249249
    return v


@njit(cache=True)
def _morton_leaves(xyz, leaf_size):
    """Split points into spatially compact leaves of ``leaf_size`` points along a Z-order curve.

    One sort of 30-bit Morton codes (O(N log N), a few ms for 40k points); consecutive runs
    of the curve are compact boxes except where the curve jumps, which only costs pruning.
    Returns ``(order, bounds)``: the points of leaf ``l`` are ``order[bounds[l]:bounds[l+1]]``.
    """
    n = xyz.shape[0]
    lo = np.empty(3)
    scale = np.empty(3)
    for a in range(3):
        vmin = np.inf
        vmax = -np.inf
        for i in range(n):
            v = np.float64(xyz[i, a])
            vmin = min(vmin, v)
            vmax = max(vmax, v)
        lo[a] = vmin
        scale[a] = 1023.0 / max(vmax - vmin, 1e-12)
    codes = np.empty(n, dtype=np.int64)
    for i in range(n):
        code = 0
        for a in range(3):
            q = np.int64((np.float64(xyz[i, a]) - lo[a]) * scale[a])
            code |= _spread_bits(min(max(q, 0), 1023)) << a
        codes[i] = code
    order = np.argsort(codes)
    nleaves = (n + leaf_size - 1) // leaf_size
    bounds = np.empty(nleaves + 1, dtype=np.int64)
    for leaf in range(nleaves):
        bounds[leaf] = leaf * leaf_size
    bounds[nleaves] = n
    return order, bounds


@njit(cache=True)
def _fps_one_bucketed(xyz, m, block, leaf_size, out):
    """Furthest point sampling of one cloud (N, 3) that skips leaves a new sample cannot change.

    A leaf whose bounding box is farther from the new sample than the leaf's largest
    running distance keeps all its distances (``min(d, temp) == temp``), so it is neither
    scanned nor updated: the result is bit-identical to the plain scan, typically an order of
    magnitude faster on scenes. Ties use CUDA's (k % block, k) rule, tracked per leaf.
    """
    n = xyz.shape[0]
    order, bounds = _morton_leaves(xyz, leaf_size)
    nleaves = bounds.shape[0] - 1
    xs = np.empty(n, dtype=xyz.dtype)
    ys = np.empty(n, dtype=xyz.dtype)
    zs = np.empty(n, dtype=xyz.dtype)
    for p in range(n):
        xs[p] = xyz[order[p], 0]
        ys[p] = xyz[order[p], 1]
        zs[p] = xyz[order[p], 2]
    box = np.empty((nleaves, 6))
    for leaf in range(nleaves):
        for a in range(3):
            box[leaf, a] = np.inf
            box[leaf, 3 + a] = -np.inf
        for p in range(bounds[leaf], bounds[leaf + 1]):
            box[leaf, 0] = min(box[leaf, 0], np.float64(xs[p]))
            box[leaf, 1] = min(box[leaf, 1], np.float64(ys[p]))
            box[leaf, 2] = min(box[leaf, 2], np.float64(zs[p]))
            box[leaf, 3] = max(box[leaf, 3], np.float64(xs[p]))
            box[leaf, 4] = max(box[leaf, 4], np.float64(ys[p]))
            box[leaf, 5] = max(box[leaf, 5], np.float64(zs[p]))
    temp = np.full(n, 1e10, dtype=xyz.dtype)
    leaf_max = np.full(nleaves, np.float64(temp[0]))
    leaf_best = np.zeros(nleaves, dtype=np.int64)
    old = 0
    out[0] = 0
    for j in range(1, m):
        x1 = xyz[old, 0]
        y1 = xyz[old, 1]
        z1 = xyz[old, 2]
        fx = np.float64(x1)
        fy = np.float64(y1)
        fz = np.float64(z1)
        for leaf in range(nleaves):
            gx = max(box[leaf, 0] - fx, 0.0, fx - box[leaf, 3])
            gy = max(box[leaf, 1] - fy, 0.0, fy - box[leaf, 4])
            gz = max(box[leaf, 2] - fz, 0.0, fz - box[leaf, 5])
            # Margin: float32 distances may round below the exact bound by a few ulp.
            if (gx * gx + gy * gy + gz * gz) * (1.0 - 1e-6) >= leaf_max[leaf]:
                continue
            best = -1.0
            besti = 0
            for p in range(bounds[leaf], bounds[leaf + 1]):
                dx = xs[p] - x1
                dy = ys[p] - y1
                dz = zs[p] - z1
                d = dx * dx + dy * dy + dz * dz
                t = temp[p]
                if d < t:
                    t = d
                    temp[p] = d
                k = order[p]
                if t > best or (t == best and _cuda_tie_key_wins(k, besti, block)):
                    best = t
                    besti = k
            leaf_max[leaf] = best
            leaf_best[leaf] = besti
        best = leaf_max[0]
        besti = leaf_best[0]
        for leaf in range(1, nleaves):
            v = leaf_max[leaf]
            if v > best or (v == best and _cuda_tie_key_wins(leaf_best[leaf], besti, block)):
                best = v
                besti = leaf_best[leaf]
        old = besti
        out[j] = old


@njit(cache=True, parallel=True)
def fps_batch_bucketed(xyz, m, block, leaf_size, out):
    """``fps_batch`` with leaf skipping (``_fps_one_bucketed``), parallel over the batch."""
    for b in prange(xyz.shape[0]):
        _fps_one_bucketed(xyz[b], m, block, leaf_size, out[b])


@njit(cache=True)
def fps_batch_bucketed_serial(xyz, m, block, leaf_size, out):
    """``fps_batch_bucketed`` on the calling thread."""
    for b in range(xyz.shape[0]):
        _fps_one_bucketed(xyz[b], m, block, leaf_size, out[b])


@njit(cache=True)
def _fps_dist_item(b, dist, m, block, out):
    """FPS of cloud ``b`` from its pairwise distance matrix ``dist[b]`` (N, N)."""
    n = dist.shape[1]
    temp = np.full(n, 1e10, dtype=dist.dtype)
    old = 0
    out[b, 0] = 0
    for j in range(1, m):
        best = -1.0
        besti = 0
        tie = False
        for k in range(n):
            d = dist[b, old, k]
            t = temp[k]
            if d < t:
                t = d
                temp[k] = d
            if t > best:
                best = t
                besti = k
                tie = False
            elif t == best:
                tie = True
        if tie:
            besti = _fps_resolve_tie(temp, best, block)
        old = besti
        out[b, j] = old


@njit(cache=True, parallel=True)
def fps_with_dist_batch(dist, m, block, out):
    """FPS from a pairwise distance matrix ``dist`` (B, N, N) into ``out`` (B, m) int32."""
    for b in prange(dist.shape[0]):
        _fps_dist_item(b, dist, m, block, out)


@njit(cache=True)
def fps_with_dist_batch_serial(dist, m, block, out):
    """``fps_with_dist_batch`` on the calling thread."""
    for b in range(dist.shape[0]):
        _fps_dist_item(b, dist, m, block, out)
