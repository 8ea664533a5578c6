"""CPU point operators: each against a brute-force reference, gradients, dispatch, CUDA parity.

The references below are literal transcriptions of what mmcv's CUDA kernels compute (float32
arithmetic, scan order, tie rules), written independently of the kernels under test.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from mmcv.ops import (
    ball_query,
    furthest_point_sample,
    furthest_point_sample_with_dist,
    gather_points,
    grouping_operation,
    knn,
    three_interpolate,
    three_nn,
)

from concept_distill.ops import cpu_point_ops
from concept_distill.patches.mmcv_point_ops import installed as is_installed

_boxes_module = importlib.import_module('mmcv.ops.points_in_boxes')


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _cloud(rng: np.random.Generator, b: int, n: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy((rng.random((b, n, 3)) * scale).astype(np.float32))


# ----------------------------------------------------------------------------------------------
# References (numpy, straight from the CUDA kernels' definitions)
# ----------------------------------------------------------------------------------------------
def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, 3), (N, 3) -> (M, N) float32 squared distances summed x, y, z like CUDA."""
    d = a[:, None, :] - b[None, :, :]
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]


def _ref_fps_from_dist(dist_rows, n: int, m: int) -> list[int]:
    """FPS where ``dist_rows(i)`` gives distances from point i; CUDA's block tie-breaking."""
    block = max(min(1 << int(math.log(float(n)) / math.log(2.0)), 1024), 1)
    temp = np.full(n, 1e10, dtype=np.float32)
    out, old = [0], 0
    for _ in range(1, m):
        temp = np.minimum(temp, dist_rows(old))
        ties = np.nonzero(temp == temp.max())[0]
        old = int(min(ties, key=lambda k: (k % block, k)))
        out.append(old)
    return out


def _ref_fps(xyz: np.ndarray, m: int) -> list[int]:
    return _ref_fps_from_dist(lambda i: _sqdist(xyz[i:i + 1], xyz)[0], xyz.shape[0], m)


def _ref_ball_query(xyz, ctr, rmin, rmax, s) -> np.ndarray:
    d2 = _sqdist(ctr, xyz)
    rmin2, rmax2 = np.float32(rmin) * np.float32(rmin), np.float32(rmax) * np.float32(rmax)
    hit = (d2 == 0) | ((d2 >= rmin2) & (d2 < rmax2))
    out = np.zeros((ctr.shape[0], s), dtype=np.int32)
    for j in range(ctr.shape[0]):
        ks = np.nonzero(hit[j])[0][:s]
        if len(ks):
            out[j] = ks[0]
            out[j, :len(ks)] = ks
    return out


def _ref_three_nn(tgt, src) -> tuple[np.ndarray, np.ndarray]:
    d2 = _sqdist(tgt, src)
    order = np.argsort(d2, axis=1, kind='stable')[:, :3]
    return np.sqrt(np.take_along_axis(d2, order, 1)), order


def _ref_knn_heap(xyz, ctr, k) -> np.ndarray:
    """mmcv's CUDA heap kNN, line by line (max-heap of float32, then heap sort)."""

    def reheap(dist, idx, size):
        root, child = 0, 1
        while child < size:
            if child + 1 < size and dist[child + 1] > dist[child]:
                child += 1
            if dist[root] > dist[child]:
                return
            dist[root], dist[child] = dist[child], dist[root]
            idx[root], idx[child] = idx[child], idx[root]
            root, child = child, 2 * child + 1

    d2 = _sqdist(ctr, xyz)
    out = np.zeros((ctr.shape[0], k), dtype=np.int32)
    for j in range(ctr.shape[0]):
        dist, idx = [np.float32(1e10)] * k, [0] * k
        for i in range(xyz.shape[0]):
            if d2[j, i] < dist[0]:
                dist[0], idx[0] = d2[j, i], i
                reheap(dist, idx, k)
        for i in range(k - 1, 0, -1):
            dist[0], dist[i] = dist[i], dist[0]
            idx[0], idx[i] = idx[i], idx[0]
            reheap(dist, idx, i)
        out[j] = idx
    return out


def _ref_points_in_boxes(pts: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    out = np.zeros((pts.shape[0], boxes.shape[0]), dtype=np.int32)
    for t, (cx, cy, cz, xs, ys, zs, rz) in enumerate(boxes.astype(np.float64)):
        cz = cz + zs / 2
        c, s = math.cos(-rz), math.sin(-rz)
        for i, (x, y, z) in enumerate(pts.astype(np.float64)):
            lx = (x - cx) * c - (y - cy) * s
            ly = (x - cx) * s + (y - cy) * c
            out[i, t] = abs(z - cz) <= zs / 2 and -xs / 2 < lx < xs / 2 and -ys / 2 < ly < ys / 2
    return out


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------
def test_dispatch_installed_everywhere_and_idempotent() -> None:
    from mmdet3d.structures.bbox_3d import base_box3d

    from concept_distill.patches.mmcv_point_ops import _MARK
    from concept_distill.patches.mmcv_point_ops import install as install_cpu_point_ops

    assert is_installed()
    fps_cls = importlib.import_module('mmcv.ops.furthest_point_sample').FurthestPointSampling
    forward, wrapped_all = fps_cls.forward, _boxes_module.points_in_boxes_all
    install_cpu_point_ops()  # a second install must not wrap the wrappers
    assert fps_cls.forward is forward and _boxes_module.points_in_boxes_all is wrapped_all
    # mmdet3d bound the function at its import, before concept_distill: rebound too.
    assert getattr(base_box3d.points_in_boxes_all, _MARK, False)
    assert getattr(base_box3d.points_in_boxes_part, _MARK, False)


def test_stacked_forms_say_they_have_no_cpu_kernel() -> None:
    xyz = torch.rand(10, 3)
    cnt = torch.tensor([10], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match='stacked'):
        ball_query(0, 0.5, 4, xyz, xyz, cnt, cnt)


# ----------------------------------------------------------------------------------------------
# Furthest point sampling
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('b,n,m', [(3, 300, 64), (1, 5000, 128), (2, 1, 4)])
def test_fps_matches_reference(b: int, n: int, m: int) -> None:
    xyz = _cloud(_rng(1), b, n)
    idx = furthest_point_sample(xyz, m)
    assert idx.dtype == torch.int32 and idx.shape == (b, m)
    for i in range(b):
        assert idx[i].tolist() == _ref_fps(xyz[i].numpy(), m)


def test_fps_duplicates_and_fewer_points_than_samples() -> None:
    rng = _rng(2)
    # 20 distinct points each repeated 3 times (ties everywhere), 100 samples > 60 points.
    base = rng.random((20, 3)).astype(np.float32)
    xyz = torch.from_numpy(np.concatenate([base, base, base])[None].repeat(2, 0))
    idx = furthest_point_sample(xyz, 100)
    ref = _ref_fps(xyz[0].numpy(), 100)
    assert idx[0].tolist() == ref and idx[1].tolist() == ref
    assert idx[0, 0] == 0 and len(set(ref[:20])) == 20
    assert ref[20:] == [0] * 80  # all distances zero: CUDA's reduction returns index 0


def test_fps_leaf_skipping_is_exact() -> None:
    """The kd-leaf skipping path gives the plain scan's indices, ties and duplicates included."""
    from concept_distill.ops.kernels import sampling as k

    rng = _rng(3)
    xyz = np.concatenate([rng.random((1, 6000, 3)), np.round(rng.random((1, 3000, 3)) * 8) / 8],
                         1).astype(np.float32)  # a lattice part: many equal distances
    xyz[0, 4000:4010] = xyz[0, 10:20]
    xyz = np.concatenate([xyz, xyz[:, ::-1]])  # batch 2
    block = cpu_point_ops._cuda_fps_block(9000)
    outs = [np.zeros((2, 400), dtype=np.int32) for _ in range(3)]
    k.fps_batch(xyz, 400, block, outs[0])
    k.fps_batch_bucketed(xyz, 400, block, 64, outs[1])
    k.fps_batch_bucketed_serial(xyz, 400, block, 64, outs[2])
    for b in range(2):
        ref = _ref_fps(xyz[b], 400)
        assert all(o[b].tolist() == ref for o in outs)


def _fps_in_child(xyz: torch.Tensor) -> list:
    return furthest_point_sample(xyz, 256).tolist()


def test_ops_work_in_a_process_forked_after_parallel_use() -> None:
    """DataLoader workers are forked: GNU OpenMP would terminate them, serial kernels do not."""
    import multiprocessing

    xyz = _cloud(_rng(16), 4, 20000)
    cpu_point_ops._kernel('fps_batch', math.inf)  # the parent's OpenMP team is started
    expected = furthest_point_sample(xyz, 256).tolist()
    with multiprocessing.get_context('fork').Pool(1) as pool:
        assert pool.apply_async(_fps_in_child, (xyz,)).get(timeout=120) == expected


def test_fps_with_dist_matches_reference() -> None:
    xyz = _cloud(_rng(4), 2, 200)
    dist = torch.cdist(xyz, xyz) ** 2
    idx = furthest_point_sample_with_dist(dist.contiguous(), 50)
    for i in range(2):
        d = dist[i].numpy()
        assert idx[i].tolist() == _ref_fps_from_dist(lambda r, d=d: d[r], 200, 50)


def test_points_sampler_modes_as_mmdet3d_uses_them() -> None:
    """mmcv's PointsSampler (D-FPS, F-FPS from feature distances, FS, sample ranges) on CPU."""
    from mmcv.ops import PointsSampler
    from mmcv.ops.points_sampler import calc_square_dist

    rng = _rng(18)
    xyz = _cloud(rng, 2, 120)
    feats = torch.from_numpy(rng.random((2, 4, 120)).astype(np.float32))
    sampler = PointsSampler([10, 6], ['F-FPS', 'FS'], [80, -1])
    idx = sampler(xyz, feats)
    assert idx.shape == (2, 10 + 2 * 6)
    both = torch.cat([xyz, feats.transpose(1, 2)], 2)
    # The distance matrices FFPSSampler hands to the op, one per sample range.
    head = calc_square_dist(both[:, :80], both[:, :80], norm=False).numpy()
    tail = calc_square_dist(both[:, 80:], both[:, 80:], norm=False).numpy()
    for b in range(2):
        f_fps = _ref_fps_from_dist(lambda r, d=head[b]: d[r], 80, 10)
        fs = _ref_fps_from_dist(lambda r, d=tail[b]: d[r], 40, 6) + \
            _ref_fps(xyz[b, 80:].numpy(), 6)
        assert idx[b].tolist() == f_fps + [80 + i for i in fs]


# ----------------------------------------------------------------------------------------------
# Ball query
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('rmin,rmax,s', [(0.0, 0.15, 16), (0.05, 0.3, 8), (0.0, 2.0, 32)])
def test_ball_query_matches_reference(rmin: float, rmax: float, s: int) -> None:
    rng = _rng(5)
    xyz = _cloud(rng, 2, 700)
    ctr = xyz[:, :50].contiguous()  # centres on points: d2 == 0 is always in
    ctr[:, 40:] = torch.from_numpy(rng.random((2, 10, 3)).astype(np.float32) * 3 - 1)
    idx = ball_query(rmin, rmax, s, xyz, ctr)
    assert idx.dtype == torch.int32 and idx.shape == (2, 50, s)
    for b in range(2):
        ref = _ref_ball_query(xyz[b].numpy(), ctr[b].numpy(), rmin, rmax, s)
        np.testing.assert_array_equal(idx[b].numpy(), ref)


def test_ball_query_on_a_lattice_excludes_the_exact_radius() -> None:
    """Lattice points: many points at exactly max_radius (excluded) and min_radius (kept)."""
    xyz = torch.from_numpy(_rng(15).integers(0, 16, (2, 800, 3)).astype(np.float32) / 8)
    ctr = xyz[:, ::20].contiguous()
    idx = ball_query(0.125, 0.25, 24, xyz, ctr)
    for b in range(2):
        ref = _ref_ball_query(xyz[b].numpy(), ctr[b].numpy(), 0.125, 0.25, 24)
        np.testing.assert_array_equal(idx[b].numpy(), ref)


def test_ball_query_edge_cases() -> None:
    xyz = torch.tensor([[[0, 0, 0], [5, 5, 5], [0.1, 0, 0], [0.1, 0, 0], [9, 9, 9]]],
                       dtype=torch.float32)
    ctr = torch.tensor([[[0, 0, 0], [20, 20, 20], [9, 9, 9]]], dtype=torch.float32)
    idx = ball_query(0.05, 0.5, 4, xyz, ctr)[0].tolist()
    # Centre 0: itself (d2 == 0 beats min_radius) and the duplicated point, padded with the
    # first index; far centre: empty -> zeros; centre 2: only itself.
    assert idx == [[0, 2, 3, 0], [0, 0, 0, 0], [4, 4, 4, 4]]


def test_ball_query_returns_first_indices_of_a_dense_ball() -> None:
    xyz = _cloud(_rng(6), 1, 3000, scale=0.1)  # everything inside the ball
    idx = ball_query(0, 1.0, 64, xyz, xyz[:, :10].contiguous())
    assert (idx[0] == torch.arange(64, dtype=torch.int32)).all()


# ----------------------------------------------------------------------------------------------
# Gathers: forward against indexing, backward with gradcheck in float64
# ----------------------------------------------------------------------------------------------
def test_grouping_forward_and_gradcheck() -> None:
    rng = _rng(7)
    feats = torch.from_numpy(rng.random((2, 5, 30))).requires_grad_()
    idx = torch.from_numpy(rng.integers(0, 30, (2, 6, 4)).astype(np.int32))
    out = grouping_operation(feats, idx)
    ref = torch.stack([feats[b][:, idx[b].long()] for b in range(2)])
    assert torch.equal(out, ref)
    assert torch.autograd.gradcheck(lambda f: grouping_operation(f, idx), (feats,))


def test_gather_points_forward_and_gradcheck() -> None:
    rng = _rng(8)
    feats = torch.from_numpy(rng.random((2, 4, 25))).requires_grad_()
    idx = torch.from_numpy(rng.integers(0, 25, (2, 40)).astype(np.int32))  # repeats
    out = gather_points(feats, idx)
    assert torch.equal(out, torch.stack([feats[b][:, idx[b].long()] for b in range(2)]))
    assert torch.autograd.gradcheck(lambda f: gather_points(f, idx), (feats,))


def test_three_interpolate_forward_and_gradcheck() -> None:
    rng = _rng(9)
    feats = torch.from_numpy(rng.random((2, 3, 12))).requires_grad_()
    idx = torch.from_numpy(rng.integers(0, 12, (2, 20, 3)).astype(np.int32))
    w = torch.from_numpy(rng.random((2, 20, 3)))
    out = three_interpolate(feats, idx, w)
    ref = torch.stack([(feats[b][:, idx[b].long()] * w[b][None]).sum(-1) for b in range(2)])
    torch.testing.assert_close(out, ref)
    assert torch.autograd.gradcheck(lambda f: three_interpolate(f, idx, w), (feats,))


def test_gathers_in_half_precision_and_bad_indices() -> None:
    rng = _rng(17)
    feats = torch.from_numpy(rng.random((2, 3, 12)).astype(np.float32))
    idx = torch.from_numpy(rng.integers(0, 12, (2, 5, 3)).astype(np.int32))
    w = torch.from_numpy(rng.random((2, 5, 3)).astype(np.float32))
    for fn, args in [(grouping_operation, (idx,)), (gather_points, (idx[:, :, 0].contiguous(),)),
                     (three_interpolate, (idx, w))]:
        full = fn(feats, *args)
        half = fn(feats.half(), *[a.half() if a.is_floating_point() else a for a in args])
        assert half.dtype == torch.float16
        torch.testing.assert_close(half.float(), full, rtol=2e-3, atol=2e-3)
    with pytest.raises(IndexError, match='out of range'):
        grouping_operation(feats, idx + 12)


# ----------------------------------------------------------------------------------------------
# Nearest neighbours
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('n,m', [(40, 60), (900, 700)])  # brute-force path, grid path
def test_three_nn_matches_reference(n: int, m: int) -> None:
    rng = _rng(10)
    src = _cloud(rng, 2, m)
    tgt = _cloud(rng, 2, n, scale=1.4)  # some targets outside the sources' box
    src[:, 5:8] = src[:, 0:1]  # duplicates: (distance, index) order decides
    tgt[:, 0] = src[:, 0]
    dist, idx = three_nn(tgt, src)
    for b in range(2):
        ref_d, ref_i = _ref_three_nn(tgt[b].numpy(), src[b].numpy())
        np.testing.assert_array_equal(idx[b].numpy(), ref_i)
        np.testing.assert_array_equal(dist[b].numpy(), ref_d)


def test_three_nn_fewer_than_three_sources() -> None:
    dist, idx = three_nn(torch.zeros(1, 2, 3), torch.ones(1, 2, 3))
    assert idx[0, 0].tolist() == [0, 1, 0]
    assert math.isinf(dist[0, 0, 2]) and dist[0, 0, 0] == pytest.approx(math.sqrt(3))


@pytest.mark.parametrize('n,m,k', [(50, 30, 8), (1200, 400, 16)])
def test_knn_matches_cuda_heap(n: int, m: int, k: int) -> None:
    rng = _rng(11)
    xyz = _cloud(rng, 2, n)
    xyz[:, 10:14] = xyz[:, 3:4]  # exact ties: the heap's order, not a sort order
    ctr = torch.cat([xyz[:, 3:4], _cloud(rng, 2, m - 1)], 1)
    idx = knn(k, xyz, ctr, False)
    assert idx.shape == (2, k, m) and idx.dtype == torch.int32
    for b in range(2):
        ref = _ref_knn_heap(xyz[b].numpy(), ctr[b].numpy(), k)
        np.testing.assert_array_equal(idx[b].numpy().T, ref)


def test_knn_transposed_and_fewer_points_than_k() -> None:
    xyz = _cloud(_rng(12), 1, 5)
    idx = knn(8, xyz.transpose(1, 2).contiguous(), None, True)
    np.testing.assert_array_equal(idx[0].numpy().T, _ref_knn_heap(xyz[0].numpy(),
                                                                   xyz[0].numpy(), 8))


# ----------------------------------------------------------------------------------------------
# Points in boxes
# ----------------------------------------------------------------------------------------------
def test_points_in_boxes_all_and_part() -> None:
    rng = _rng(13)
    pts = torch.from_numpy((rng.random((2, 400, 3)) * 4 - 2).astype(np.float32))
    boxes = np.concatenate([rng.random((2, 6, 3)) * 2 - 1, rng.random((2, 6, 3)) + 0.3,
                            rng.random((2, 6, 1)) * 6 - 3], -1).astype(np.float32)
    boxes = torch.from_numpy(boxes)
    all_ = _boxes_module.points_in_boxes_all(pts, boxes)
    part = _boxes_module.points_in_boxes_part(pts, boxes)
    assert all_.dtype == part.dtype == torch.int32
    for b in range(2):
        ref = _ref_points_in_boxes(pts[b].numpy(), boxes[b].numpy())
        np.testing.assert_array_equal(all_[b].numpy(), ref)
        first = np.where(ref.any(1), ref.argmax(1), -1)
        np.testing.assert_array_equal(part[b].numpy(), first)
    assert 0 < all_.sum() < all_.numel()  # the test sees points inside and outside


def test_mmdet3d_boxes_use_the_cpu_kernel() -> None:
    from mmdet3d.structures import DepthInstance3DBoxes

    boxes = DepthInstance3DBoxes(torch.tensor([[0., 0, 0, 2, 2, 2, 0], [5, 5, 0, 1, 1, 1, 0]]))
    pts = torch.tensor([[0., 0, 1], [5, 5, 0.5], [9, 9, 9]])
    assert boxes.points_in_boxes_part(pts).tolist() == [0, 1, -1]
    assert boxes.points_in_boxes_all(pts).tolist() == [[1, 0], [0, 1], [0, 0]]


# ----------------------------------------------------------------------------------------------
# CUDA parity (GPU machine only): the same inputs through mmcv's kernels and ours
# ----------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cpu_matches_mmcv_cuda_kernels() -> None:
    rng = _rng(14)
    # Coordinates on a 1/64 lattice: every squared distance is exact in float32, so nvcc's
    # fused multiply-adds cannot move one by an ulp, and equal distances (ties) abound.
    xyz = torch.from_numpy(rng.integers(0, 128, (2, 4000, 3)).astype(np.float32) / 64)
    xyz[:, 100:110] = xyz[:, 0:1]  # duplicates
    ctr = xyz[:, :300].contiguous()
    feats = torch.from_numpy(rng.random((2, 8, 4000)).astype(np.float32))
    cuda = torch.device('cuda')

    def both(fn, *args):
        on_gpu = [a.to(cuda) if isinstance(a, torch.Tensor) else a for a in args]
        return fn(*args), fn(*on_gpu)

    for cpu_out, gpu_out in [both(furthest_point_sample, xyz, 512),
                             both(furthest_point_sample, xyz[:, :50].contiguous(), 80),
                             both(ball_query, 0.0, 0.25, 32, xyz, ctr),
                             both(ball_query, 0.125, 0.5, 16, xyz, ctr),
                             both(knn, 16, xyz, ctr, False)]:
        assert torch.equal(cpu_out, gpu_out.cpu())
    dist = (torch.cdist(xyz[:, :300], xyz[:, :300]) ** 2).contiguous()
    cpu_out, gpu_out = both(furthest_point_sample_with_dist, dist, 64)
    assert torch.equal(cpu_out, gpu_out.cpu())
    (cd, ci), (gd, gi) = both(three_nn, xyz, ctr)
    assert torch.equal(ci, gi.cpu())
    torch.testing.assert_close(cd, gd.cpu())
    idx = ball_query(0.0, 0.3, 16, xyz, ctr)
    for fn, args in [(grouping_operation, (feats, idx)),
                     (gather_points, (feats, idx[:, :, 0].contiguous())),
                     (three_interpolate, (feats, ci, torch.rand(2, 4000, 3)))]:
        cpu_in = [a.detach().clone().requires_grad_() if a.is_floating_point() else a
                  for a in args]
        gpu_in = [a.detach().to(cuda).requires_grad_() if a.is_floating_point() else a.to(cuda)
                  for a in args]
        cpu_out, gpu_out = fn(*cpu_in), fn(*gpu_in)
        torch.testing.assert_close(cpu_out, gpu_out.cpu())
        cpu_out.sum().backward()
        gpu_out.sum().backward()
        torch.testing.assert_close(cpu_in[0].grad, gpu_in[0].grad.cpu(), rtol=1e-4, atol=1e-4)
    pts = torch.rand(2, 3000, 3) * 4 - 2
    boxes = torch.cat([torch.rand(2, 8, 3) * 2 - 1, torch.rand(2, 8, 3) + 0.3,
                       torch.rand(2, 8, 1) * 6 - 3], -1)
    axis_aligned = torch.cat([boxes[..., :6], torch.zeros(2, 8, 1)], -1)
    for fn in (_boxes_module.points_in_boxes_all, _boxes_module.points_in_boxes_part):
        # Without yaw the box test is exact arithmetic: identical results.
        assert torch.equal(fn(pts, axis_aligned), fn(pts.to(cuda), axis_aligned.to(cuda)).cpu())
        # With yaw, CUDA's cosf/sinf and fused multiply-adds may move a point lying within an
        # ulp of a face; allow no more than that.
        mismatch = (fn(pts, boxes) != fn(pts.to(cuda), boxes.to(cuda)).cpu()).float().mean()
        assert mismatch < 1e-3
