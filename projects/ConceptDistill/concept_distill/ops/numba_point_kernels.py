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


@njit(cache=True, parallel=True)
def fps_batch(xyz, m, block, out):
    """FPS of every cloud of ``xyz`` (B, N, 3) into ``out`` (B, m) int32, parallel over B."""
    for b in prange(xyz.shape[0]):
        x = np.ascontiguousarray(xyz[b, :, 0])
        y = np.ascontiguousarray(xyz[b, :, 1])
        z = np.ascontiguousarray(xyz[b, :, 2])
        _fps_one(x, y, z, m, block, out[b])


@njit(cache=True, parallel=True)
def fps_single_chunked(xyz, m, block, nchunks, out):
    """FPS of one cloud ``xyz`` (N, 3), each iteration split over ``nchunks`` threads.

    Used when the batch is smaller than the thread count (inference, batch 1): the outer loop
    over samples is inherently sequential, the scan over points is not.
    """
    n = xyz.shape[0]
    x = np.ascontiguousarray(xyz[:, 0])
    y = np.ascontiguousarray(xyz[:, 1])
    z = np.ascontiguousarray(xyz[:, 2])
    temp = np.full(n, 1e10, dtype=xyz.dtype)
    chunk = (n + nchunks - 1) // nchunks
    cbest = np.empty(nchunks, dtype=np.float64)
    cbesti = np.empty(nchunks, dtype=np.int64)
    ctie = np.empty(nchunks, dtype=np.bool_)
    old = 0
    out[0] = 0
    for j in range(1, m):
        x1 = x[old]
        y1 = y[old]
        z1 = z[old]
        for c in prange(nchunks):
            lo = c * chunk
            hi = min(n, lo + chunk)
            best = -1.0
            besti = 0
            tie = False
            for k in range(lo, hi):
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
            cbest[c] = best
            cbesti[c] = besti
            ctie[c] = tie
        best = cbest[0]
        besti = cbesti[0]
        tie = ctie[0]
        for c in range(1, nchunks):
            if cbest[c] > best:
                best = cbest[c]
                besti = cbesti[c]
                tie = ctie[c]
            elif cbest[c] == best:
                tie = True
        if tie:
            besti = _fps_resolve_tie(temp, best, block)
        old = besti
        out[j] = old


@njit(cache=True, parallel=True)
def fps_with_dist_batch(dist, m, block, out):
    """FPS from a pairwise distance matrix ``dist`` (B, N, N) into ``out`` (B, m) int32."""
    n = dist.shape[1]
    for b in prange(dist.shape[0]):
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


# ----------------------------------------------------------------------------------------------
# Uniform grid
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def build_grid(pts, cell, max_cells):
    """Bucket ``pts`` (N, 3) into cubic cells of side >= ``cell`` (at most ``max_cells`` cells).

    Returns ``(origin (3,) f8, side f8, dims (3,) i8, start (C + 1,) i8, order (N,) i8,
    sorted_pts (N, 3))``: the points of cell ``c`` are ``order[start[c]:start[c + 1]]``, in
    increasing index order (stable counting sort), and ``sorted_pts`` holds their coordinates
    in that order so a cell scan reads contiguous memory.
    """
    n = pts.shape[0]
    origin = np.zeros(3)
    upper = np.zeros(3)
    if n > 0:
        for a in range(3):
            lo = np.inf
            hi = -np.inf
            for i in range(n):
                v = np.float64(pts[i, a])
                lo = min(lo, v)
                hi = max(hi, v)
            origin[a] = lo
            upper[a] = hi
    side = max(cell, 1e-6)
    dims = np.ones(3, dtype=np.int64)
    while True:
        total = 1
        for a in range(3):
            dims[a] = np.int64((upper[a] - origin[a]) / side) + 1
            total *= dims[a]
        if total <= max_cells:
            break
        # Too many cells for linear memory: grow the side and retry.
        side *= max(1.1, (total / max_cells) ** (1.0 / 3.0))
    ncells = dims[0] * dims[1] * dims[2]
    cell_of = np.empty(n, dtype=np.int64)
    start = np.zeros(ncells + 1, dtype=np.int64)
    for i in range(n):
        ix = min(np.int64((np.float64(pts[i, 0]) - origin[0]) / side), dims[0] - 1)
        iy = min(np.int64((np.float64(pts[i, 1]) - origin[1]) / side), dims[1] - 1)
        iz = min(np.int64((np.float64(pts[i, 2]) - origin[2]) / side), dims[2] - 1)
        c = (ix * dims[1] + iy) * dims[2] + iz
        cell_of[i] = c
        start[c + 1] += 1
    for c in range(ncells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    sorted_pts = np.empty((n, 3), dtype=pts.dtype)
    for i in range(n):
        c = cell_of[i]
        p = fill[c]
        fill[c] = p + 1
        order[p] = i
        sorted_pts[p, 0] = pts[i, 0]
        sorted_pts[p, 1] = pts[i, 1]
        sorted_pts[p, 2] = pts[i, 2]
    return origin, side, dims, start, order, sorted_pts


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
@njit(cache=True, parallel=True)
def ball_query_grid(centers, min_r2, max_r2, reach, nsample, origin, side, dims, start, order,
                    sorted_pts, out):
    """mmcv ball query of ``centers`` (M, 3) against one gridded cloud, into ``out`` (M, S).

    Keeps, per centre, the ``nsample`` smallest point indices with ``d2 == 0`` or
    ``min_r2 <= d2 < max_r2``; a short ball is padded with its first index, an empty one is
    all zeros (as the CUDA kernel, which scans points in index order and stops at nsample).
    """
    for j in prange(centers.shape[0]):
        row = out[j]
        cx = centers[j, 0]
        cy = centers[j, 1]
        cz = centers[j, 2]
        x0, x1 = _cell_range(np.float64(cx), reach, origin[0], side, dims[0])
        y0, y1 = _cell_range(np.float64(cy), reach, origin[1], side, dims[1])
        z0, z1 = _cell_range(np.float64(cz), reach, origin[2], side, dims[2])
        cnt = 0
        for ix in range(x0, x1 + 1):
            for iy in range(y0, y1 + 1):
                base = (ix * dims[1] + iy) * dims[2]
                for iz in range(z0, z1 + 1):
                    c = base + iz
                    for p in range(start[c], start[c + 1]):
                        k = order[p]
                        # Indices rise within a cell: once the selection is full, the rest
                        # of this cell cannot enter it.
                        if cnt == nsample and k > row[nsample - 1]:
                            break
                        dx = cx - sorted_pts[p, 0]
                        dy = cy - sorted_pts[p, 1]
                        dz = cz - sorted_pts[p, 2]
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


@njit(cache=True, parallel=True)
def topk_brute(queries, pts, out_d, out_i):
    """Exact ``K = out_d.shape[1]`` nearest ``pts`` of each query by (distance, index).

    Unfilled slots (fewer points than K) keep ``inf`` and ``_NO_INDEX``.
    """
    kk = out_d.shape[1]
    for j in prange(queries.shape[0]):
        bestd = out_d[j]
        besti = out_i[j]
        for s in range(kk):
            bestd[s] = np.inf
            besti[s] = _NO_INDEX
        qx = queries[j, 0]
        qy = queries[j, 1]
        qz = queries[j, 2]
        for k in range(pts.shape[0]):
            dx = qx - pts[k, 0]
            dy = qy - pts[k, 1]
            dz = qz - pts[k, 2]
            _insert_sorted(bestd, besti, dx * dx + dy * dy + dz * dz, k)


@njit(cache=True, parallel=True)
def topk_grid(queries, origin, side, dims, start, order, sorted_pts, out_d, out_i):
    """Same result as ``topk_brute``, searching grid shells outwards from the query's cell.

    After the shell of Chebyshev radius r is scanned, every unscanned point is at least the
    distance from the query to the outside of the scanned block of cells; the search stops when
    the K-th best distance is below that bound (with a margin for float rounding).
    """
    kk = out_d.shape[1]
    n = sorted_pts.shape[0]
    for j in prange(queries.shape[0]):
        bestd = out_d[j]
        besti = out_i[j]
        for s in range(kk):
            bestd[s] = np.inf
            besti[s] = _NO_INDEX
        qx = queries[j, 0]
        qy = queries[j, 1]
        qz = queries[j, 2]
        q = np.empty(3)
        q[0] = qx
        q[1] = qy
        q[2] = qz
        c0 = np.empty(3, dtype=np.int64)
        for a in range(3):
            f = (q[a] - origin[a]) / side
            f = min(max(f, 0.0), np.float64(dims[a] - 1))
            c0[a] = np.int64(f)
        found = 0
        r = 0
        while True:
            for dxc in range(-r, r + 1):
                ix = c0[0] + dxc
                if ix < 0 or ix >= dims[0]:
                    continue
                for dyc in range(-r, r + 1):
                    iy = c0[1] + dyc
                    if iy < 0 or iy >= dims[1]:
                        continue
                    on_face = dxc == -r or dxc == r or dyc == -r or dyc == r
                    step = 1 if on_face else 2 * r
                    dzc = -r
                    while dzc <= r:
                        iz = c0[2] + dzc
                        if iz >= 0 and iz < dims[2]:
                            c = (ix * dims[1] + iy) * dims[2] + iz
                            for p in range(start[c], start[c + 1]):
                                dx = qx - sorted_pts[p, 0]
                                dy = qy - sorted_pts[p, 1]
                                dz = qz - sorted_pts[p, 2]
                                _insert_sorted(bestd, besti, dx * dx + dy * dy + dz * dz,
                                               order[p])
                                found += 1
                        if step == 0:
                            break
                        dzc += step
            # Lower bound on the distance to any cell outside the scanned block.
            bound = np.inf
            more = False
            for a in range(3):
                if c0[a] - r > 0:
                    more = True
                    bound = min(bound, q[a] - (origin[a] + (c0[a] - r) * side))
                if c0[a] + r < dims[a] - 1:
                    more = True
                    bound = min(bound, origin[a] + (c0[a] + r + 1) * side - q[a])
            if not more or found >= n:
                break
            if found >= kk:
                bound = max(bound, 0.0)
                if np.float64(bestd[kk - 1]) < bound * bound * (1.0 - 1e-5):
                    break
            r += 1


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


@njit(cache=True, parallel=True)
def knn_heap_rows(queries, pts, rows, k, out_i):
    """mmcv's heap kNN (full scan, max-heap, heap sort) for the query indices in ``rows``.

    The heap holds float32 distances initialised to 1e10 with index 0, as in CUDA, so ties and
    clouds smaller than k give the very same indices as the CUDA kernel.
    """
    for r in prange(rows.shape[0]):
        j = rows[r]
        dist = np.full(k, np.float32(1e10), dtype=np.float32)
        idx = np.zeros(k, dtype=np.int64)
        qx = queries[j, 0]
        qy = queries[j, 1]
        qz = queries[j, 2]
        for i in range(pts.shape[0]):
            dx = qx - pts[i, 0]
            dy = qy - pts[i, 1]
            dz = qz - pts[i, 2]
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
            out_i[j, s] = idx[s]
