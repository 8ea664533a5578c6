"""Numba neighbour searches (ball query, k nearest) with the semantics of mmcv's CUDA kernels.

Each cloud of a batch is bucketed into a uniform grid by a counting sort (``build_grids``):
memory is linear in the number of points (no centres x points matrix), and the points of a
cell stay in index order, which the ball query needs to return the *first* ``nsample``
neighbours in point-index order with an early stop. Distances are computed as CUDA does,
``(q - p) * (q - p)`` summed over x, y, z in the input's dtype. Each parallel kernel has a
``_serial`` twin (see ``cpu_point_ops._kernel``). Compiled lazily and cached on disk.
"""
import numpy as np
from numba import njit, prange

# Sentinel index larger than any point index, so a real candidate always wins a tie.
_NO_INDEX = np.int64(2**62)


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
