"""Numba point-in-yawed-box test with the arithmetic of mmcv's CUDA ``points_in_boxes``."""
from numba import njit, prange


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
