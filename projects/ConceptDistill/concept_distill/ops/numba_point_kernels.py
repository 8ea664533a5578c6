"""Numba kernels behind the CPU point operators (compiled lazily on first call, cached on disk).

Every kernel reproduces the arithmetic of mmcv's CUDA kernel it replaces: distances are
``(a - b) * (a - b)`` summed over x, y, z in the dtype of the input, compared the same way, and
ties are broken the same way, so CPU and CUDA agree index for index on the same inputs (up to
the fused multiply-adds nvcc may emit, which can move a distance by one ulp).

Neighbour searches use a uniform grid built by a counting sort (``build_grid``): memory is
linear in the number of points, and points inside a cell stay in index order, which the ball
query needs to return the *first* ``nsample`` neighbours in point-index order.
"""
import numpy as np
from numba import njit, prange

# Sentinel index larger than any point index, so a real candidate always wins a tie.
_NO_INDEX = np.int64(2**62)


# ----------------------------------------------------------------------------------------------
# Furthest point sampling
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Uniform grids, one per cloud of a batch, in flat arrays
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def _grid_shape(pts, cell, max_cells, origin, dims):
    """Fill ``origin`` (3,) and ``dims`` (3,) of a grid over ``pts`` (N, 3); return the side.

    The side is at least ``cell`` and grows until the grid has at most ``max_cells`` cells,
    which keeps the memory linear in the number of points.
    """
    upper = np.zeros(3)
    for a in range(3):
        lo = np.inf
        hi = -np.inf
        for i in range(pts.shape[0]):
            v = np.float64(pts[i, a])
            lo = min(lo, v)
            hi = max(hi, v)
        origin[a] = lo if pts.shape[0] > 0 else 0.0
        upper[a] = hi if pts.shape[0] > 0 else 0.0
    side = max(cell, 1e-6)
    while True:
        total = 1
        for a in range(3):
            dims[a] = np.int64((upper[a] - origin[a]) / side) + 1
            total *= dims[a]
        if total <= max_cells:
            return side
        side *= max(1.1, (total / max_cells) ** (1.0 / 3.0))


@njit(cache=True)
def _grid_layout(pts, cells, max_cells):
    """Shapes and empty arrays of the grids of ``build_grids`` (see there)."""
    nb, n = pts.shape[0], pts.shape[1]
    origin = np.zeros((nb, 3))
    side = np.zeros(nb)
    dims = np.ones((nb, 3), dtype=np.int64)
    offset = np.zeros(nb + 1, dtype=np.int64)
    for b in range(nb):
        side[b] = _grid_shape(pts[b], cells[b], max_cells, origin[b], dims[b])
        offset[b + 1] = offset[b] + dims[b, 0] * dims[b, 1] * dims[b, 2] + 1
    start = np.zeros(offset[nb], dtype=np.int64)
    order = np.empty((nb, n), dtype=np.int64)
    sorted_pts = np.empty((nb, n, 3), dtype=pts.dtype)
    return origin, side, dims, offset, start, order, sorted_pts


@njit(cache=True)
def _fill_grid(b, pts, origin, side, dims, offset, start, order, sorted_pts):
    """Counting sort of cloud ``b`` into its cells (stable: index order within a cell)."""
    n = pts.shape[1]
    st = start[offset[b]:offset[b + 1]]
    ncells = st.shape[0] - 1
    cell_of = np.empty(n, dtype=np.int64)
    for i in range(n):
        ix = min(np.int64((np.float64(pts[b, i, 0]) - origin[b, 0]) / side[b]), dims[b, 0] - 1)
        iy = min(np.int64((np.float64(pts[b, i, 1]) - origin[b, 1]) / side[b]), dims[b, 1] - 1)
        iz = min(np.int64((np.float64(pts[b, i, 2]) - origin[b, 2]) / side[b]), dims[b, 2] - 1)
        c = (ix * dims[b, 1] + iy) * dims[b, 2] + iz
        cell_of[i] = c
        st[c + 1] += 1
    for c in range(ncells):
        st[c + 1] += st[c]
    fill = st[:-1].copy()
    for i in range(n):
        c = cell_of[i]
        p = fill[c]
        fill[c] = p + 1
        order[b, p] = i
        sorted_pts[b, p, 0] = pts[b, i, 0]
        sorted_pts[b, p, 1] = pts[b, i, 1]
        sorted_pts[b, p, 2] = pts[b, i, 2]


@njit(cache=True, parallel=True)
def build_grids(pts, cells, max_cells):
    """Bucket each cloud of ``pts`` (B, N, 3) into cubic cells of side >= ``cells[b]``.

    Returns ``(origin (B, 3), side (B,), dims (B, 3), offset (B + 1,), start, order (B, N),
    sorted_pts (B, N, 3))``. The points of cell ``c`` of cloud ``b`` are
    ``order[b, p]`` for ``p`` in ``start[offset[b] + c]:start[offset[b] + c + 1]``, in
    increasing index order (stable counting sort); ``sorted_pts`` holds their coordinates in
    that order so that a cell scan reads contiguous memory.
    """
    grid = _grid_layout(pts, cells, max_cells)
    for b in prange(pts.shape[0]):
        _fill_grid(b, pts, *grid)
    return grid


@njit(cache=True)
def build_grids_serial(pts, cells, max_cells):
    """``build_grids`` on the calling thread."""
    grid = _grid_layout(pts, cells, max_cells)
    for b in range(pts.shape[0]):
        _fill_grid(b, pts, *grid)
    return grid


@njit(cache=True, inline='always')
def _cell_range(q, reach, origin, side, dim):
    """First and last cell index along one axis that a ball of radius ``reach`` touches."""
    lo = (q - reach - origin) / side
    hi = (q + reach - origin) / side
    # Clamp in floating point first: a far-away query must not overflow the int cast.
    lo = min(max(lo, -1.0), np.float64(dim))
    hi = min(max(hi, -1.0), np.float64(dim))
    return max(np.int64(np.floor(lo)), 0), min(np.int64(np.floor(hi)), dim - 1)


# ----------------------------------------------------------------------------------------------
# Ball query
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def _ball_query_grid_item(flat, centers, min_r2, max_r2, reach, nsample, origin, side, dims, offset,
                          start, order, sorted_pts, out):
    nq = centers.shape[1]
    b = flat // nq
    j = flat % nq
    row = out[b, j]
    st = start[offset[b]:offset[b + 1]]
    cx = centers[b, j, 0]
    cy = centers[b, j, 1]
    cz = centers[b, j, 2]
    x0, x1 = _cell_range(np.float64(cx), reach, origin[b, 0], side[b], dims[b, 0])
    y0, y1 = _cell_range(np.float64(cy), reach, origin[b, 1], side[b], dims[b, 1])
    z0, z1 = _cell_range(np.float64(cz), reach, origin[b, 2], side[b], dims[b, 2])
    cnt = 0
    for ix in range(x0, x1 + 1):
        for iy in range(y0, y1 + 1):
            base = (ix * dims[b, 1] + iy) * dims[b, 2]
            for iz in range(z0, z1 + 1):
                c = base + iz
                for p in range(st[c], st[c + 1]):
                    k = order[b, p]
                    # Indices rise within a cell: once the selection is full, the rest
                    # of this cell cannot enter it.
                    if cnt == nsample and k > row[nsample - 1]:
                        break
                    dx = cx - sorted_pts[b, p, 0]
                    dy = cy - sorted_pts[b, p, 1]
                    dz = cz - sorted_pts[b, p, 2]
                    d2 = dx * dx + dy * dy + dz * dz
                    if d2 == 0 or (d2 >= min_r2 and d2 < max_r2):
                        if cnt < nsample:
                            pos = cnt
                            cnt += 1
                        else:
                            pos = nsample - 1
                        while pos > 0 and row[pos - 1] > k:
                            row[pos] = row[pos - 1]
                            pos -= 1
                        row[pos] = k
    if cnt == 0:
        for s in range(nsample):
            row[s] = 0
    else:
        for s in range(cnt, nsample):
            row[s] = row[0]


@njit(cache=True, parallel=True)
def ball_query_grid(centers, min_r2, max_r2, reach, nsample, origin, side, dims, offset, start,
                    order, sorted_pts, out):
    """mmcv ball query of ``centers`` (B, M, 3) against gridded clouds, into ``out`` (B, M, S).

    Keeps, per centre, the ``nsample`` smallest point indices with ``d2 == 0`` or
    ``min_r2 <= d2 < max_r2``; a short ball is padded with its first index, an empty one is
    all zeros (as the CUDA kernel, which scans points in index order and stops at nsample).
    """
    for flat in prange(centers.shape[0] * centers.shape[1]):
        _ball_query_grid_item(flat, centers, min_r2, max_r2, reach, nsample, origin, side, dims,
                              offset, start, order, sorted_pts, out)


@njit(cache=True)
def ball_query_grid_serial(centers, min_r2, max_r2, reach, nsample, origin, side, dims, offset,
                           start, order, sorted_pts, out):
    """``ball_query_grid`` on the calling thread."""
    for flat in range(centers.shape[0] * centers.shape[1]):
        _ball_query_grid_item(flat, centers, min_r2, max_r2, reach, nsample, origin, side, dims,
                              offset, start, order, sorted_pts, out)


# ----------------------------------------------------------------------------------------------
# k nearest neighbours (stable order: distance, then index)
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline='always')
def _insert_sorted(bestd, besti, d, k):
    """Insert candidate (d, k) into the ascending (distance, index) top list, if it enters."""
    last = bestd.shape[0] - 1
    if d < bestd[last] or (d == bestd[last] and k < besti[last]):
        pos = last
        while pos > 0 and (bestd[pos - 1] > d or (bestd[pos - 1] == d and besti[pos - 1] > k)):
            bestd[pos] = bestd[pos - 1]
            besti[pos] = besti[pos - 1]
            pos -= 1
        bestd[pos] = d
        besti[pos] = k


@njit(cache=True)
def _topk_brute_item(flat, queries, pts, out_d, out_i):
    kk = out_d.shape[2]
    nq = queries.shape[1]
    b = flat // nq
    j = flat % nq
    bestd = out_d[b, j]
    besti = out_i[b, j]
    for s in range(kk):
        bestd[s] = np.inf
        besti[s] = _NO_INDEX
    qx = queries[b, j, 0]
    qy = queries[b, j, 1]
    qz = queries[b, j, 2]
    for k in range(pts.shape[1]):
        dx = qx - pts[b, k, 0]
        dy = qy - pts[b, k, 1]
        dz = qz - pts[b, k, 2]
        _insert_sorted(bestd, besti, dx * dx + dy * dy + dz * dz, k)


@njit(cache=True, parallel=True)
def topk_brute(queries, pts, out_d, out_i):
    """Exact ``K = out_d.shape[2]`` nearest ``pts`` (B, N, 3) of ``queries`` (B, M, 3).

    Ordered by (distance, index), as a strict-less insertion scan in index order (mmcv's
    three_nn). Unfilled slots (fewer points than K) keep ``inf`` and ``_NO_INDEX``.
    """
    for flat in prange(queries.shape[0] * queries.shape[1]):
        _topk_brute_item(flat, queries, pts, out_d, out_i)


@njit(cache=True)
def topk_brute_serial(queries, pts, out_d, out_i):
    """``topk_brute`` on the calling thread."""
    for flat in range(queries.shape[0] * queries.shape[1]):
        _topk_brute_item(flat, queries, pts, out_d, out_i)


@njit(cache=True)
def _topk_grid_item(flat, queries, origin, side, dims, offset, start, order, sorted_pts, out_d,
                    out_i):
    kk = out_d.shape[2]
    n = sorted_pts.shape[1]
    nq = queries.shape[1]
    b = flat // nq
    j = flat % nq
    bestd = out_d[b, j]
    besti = out_i[b, j]
    for s in range(kk):
        bestd[s] = np.inf
        besti[s] = _NO_INDEX
    st = start[offset[b]:offset[b + 1]]
    h = side[b]
    qx = queries[b, j, 0]
    qy = queries[b, j, 1]
    qz = queries[b, j, 2]
    q = np.empty(3)
    q[0] = qx
    q[1] = qy
    q[2] = qz
    c0 = np.empty(3, dtype=np.int64)
    for a in range(3):
        f = (q[a] - origin[b, a]) / h
        f = min(max(f, 0.0), np.float64(dims[b, a] - 1))
        c0[a] = np.int64(f)
    found = 0
    r = 0
    while True:
        for dxc in range(-r, r + 1):
            ix = c0[0] + dxc
            if ix < 0 or ix >= dims[b, 0]:
                continue
            for dyc in range(-r, r + 1):
                iy = c0[1] + dyc
                if iy < 0 or iy >= dims[b, 1]:
                    continue
                # Inside the shell only its two z faces are new.
                on_face = dxc == -r or dxc == r or dyc == -r or dyc == r
                step = 1 if on_face else 2 * r
                dzc = -r
                while dzc <= r:
                    iz = c0[2] + dzc
                    if iz >= 0 and iz < dims[b, 2]:
                        c = (ix * dims[b, 1] + iy) * dims[b, 2] + iz
                        for p in range(st[c], st[c + 1]):
                            dx = qx - sorted_pts[b, p, 0]
                            dy = qy - sorted_pts[b, p, 1]
                            dz = qz - sorted_pts[b, p, 2]
                            _insert_sorted(bestd, besti, dx * dx + dy * dy + dz * dz, order[b, p])
                            found += 1
                    dzc += step
        # Lower bound on the distance to any cell outside the scanned block.
        bound = np.inf
        more = False
        for a in range(3):
            if c0[a] - r > 0:
                more = True
                bound = min(bound, q[a] - (origin[b, a] + (c0[a] - r) * h))
            if c0[a] + r < dims[b, a] - 1:
                more = True
                bound = min(bound, origin[b, a] + (c0[a] + r + 1) * h - q[a])
        if not more or found >= n:
            break
        if found >= kk:
            bound = max(bound, 0.0)
            if np.float64(bestd[kk - 1]) < bound * bound * (1.0 - 1e-5):
                break
        r += 1


@njit(cache=True, parallel=True)
def topk_grid(queries, origin, side, dims, offset, start, order, sorted_pts, out_d, out_i):
    """Same result as ``topk_brute``, searching grid shells outwards from the query's cell.

    After the shell of Chebyshev radius r is scanned, every unscanned point is at least the
    distance from the query to the outside of the scanned block of cells; the search stops when
    the K-th best distance is below that bound (with a margin for float rounding).
    """
    for flat in prange(queries.shape[0] * queries.shape[1]):
        _topk_grid_item(flat, queries, origin, side, dims, offset, start, order, sorted_pts,
                        out_d, out_i)


@njit(cache=True)
def topk_grid_serial(queries, origin, side, dims, offset, start, order, sorted_pts, out_d, out_i):
    """``topk_grid`` on the calling thread."""
    for flat in range(queries.shape[0] * queries.shape[1]):
        _topk_grid_item(flat, queries, origin, side, dims, offset, start, order, sorted_pts,
                        out_d, out_i)


# ----------------------------------------------------------------------------------------------
# knn exactly as mmcv's CUDA heap (used where distances tie, where heap order matters)
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline='always')
def _reheap(dist, idx, k):
    root = 0
    child = 1
    while child < k:
        if child + 1 < k and dist[child + 1] > dist[child]:
            child += 1
        if dist[root] > dist[child]:
            return
        dist[root], dist[child] = dist[child], dist[root]
        idx[root], idx[child] = idx[child], idx[root]
        root = child
        child = root * 2 + 1


@njit(cache=True)
def _knn_heap_rows_item(r, queries, pts, rows, k, out_i):
    b = rows[r, 0]
    j = rows[r, 1]
    dist = np.full(k, np.float32(1e10), dtype=np.float32)
    idx = np.zeros(k, dtype=np.int64)
    qx = queries[b, j, 0]
    qy = queries[b, j, 1]
    qz = queries[b, j, 2]
    for i in range(pts.shape[1]):
        dx = qx - pts[b, i, 0]
        dy = qy - pts[b, i, 1]
        dz = qz - pts[b, i, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 < dist[0]:
            dist[0] = d2
            idx[0] = i
            _reheap(dist, idx, k)
    for i in range(k - 1, 0, -1):
        dist[0], dist[i] = dist[i], dist[0]
        idx[0], idx[i] = idx[i], idx[0]
        _reheap(dist, idx, i)
    for s in range(k):
        out_i[b, j, s] = idx[s]


@njit(cache=True, parallel=True)
def knn_heap_rows(queries, pts, rows, k, out_i):
    """mmcv's heap kNN (full scan, max-heap, heap sort) for the (batch, query) pairs ``rows``.

    The heap holds float32 distances initialised to 1e10 with index 0, as in CUDA, so ties and
    clouds smaller than k give the very same indices as the CUDA kernel.
    """
    for r in prange(rows.shape[0]):
        _knn_heap_rows_item(r, queries, pts, rows, k, out_i)


@njit(cache=True)
def knn_heap_rows_serial(queries, pts, rows, k, out_i):
    """``knn_heap_rows`` on the calling thread."""
    for r in range(rows.shape[0]):
        _knn_heap_rows_item(r, queries, pts, rows, k, out_i)


# ----------------------------------------------------------------------------------------------
# Points in boxes
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def _points_in_boxes_item(flat, pts, centre, half, cosa, sina, want_all, out_all, out_part):
    npts = pts.shape[1]
    nbox = centre.shape[1]
    b = flat // npts
    i = flat % npts
    x = pts[b, i, 0]
    y = pts[b, i, 1]
    z = pts[b, i, 2]
    for t in range(nbox):
        if abs(z - centre[b, t, 2]) > half[b, t, 2]:
            continue
        sx = x - centre[b, t, 0]
        sy = y - centre[b, t, 1]
        ca = cosa[b, t]
        sa = sina[b, t]
        lx = sx * ca + sy * (-sa)
        ly = sx * sa + sy * ca
        if lx > -half[b, t, 0] and lx < half[b, t, 0] and ly > -half[b, t, 1] \
                and ly < half[b, t, 1]:
            if want_all:
                out_all[b, i, t] = 1
            else:
                out_part[b, i] = t
                break


@njit(cache=True, parallel=True)
def points_in_boxes(pts, centre, half, cosa, sina, want_all, out_all, out_part):
    """mmcv's point-in-yawed-box test of ``pts`` (B, M, 3) against per-box parameters.

    ``centre`` (B, T, 3) holds x, y and the z of the box's centre, ``half`` (B, T, 3) the half
    sizes (float64, as CUDA compares against ``size / 2.0``), ``cosa``/``sina`` (B, T) the
    rotation by -yaw. With ``want_all`` fills ``out_all`` (B, M, T) with 1 where inside,
    otherwise ``out_part`` (B, M) with the first box holding the point (it must start at -1).
    """
    for flat in prange(pts.shape[0] * pts.shape[1]):
        _points_in_boxes_item(flat, pts, centre, half, cosa, sina, want_all, out_all, out_part)


@njit(cache=True)
def points_in_boxes_serial(pts, centre, half, cosa, sina, want_all, out_all, out_part):
    """``points_in_boxes`` on the calling thread."""
    for flat in range(pts.shape[0] * pts.shape[1]):
        _points_in_boxes_item(flat, pts, centre, half, cosa, sina, want_all, out_all, out_part)
