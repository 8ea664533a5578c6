"""3DETR building blocks on hand-made inputs: GIoU, matcher, heading bins, Fourier
embedding, decoder, set loss."""
import math

import pytest
import torch

from concept_distill.models.threedetr import (
    FourierPositionEmbedding3D,
    HeadingBinCoder,
    HungarianMatcher3D,
    ThreeDETRDecoder,
    ThreeDETRSetLoss,
    axis_aligned_giou,
    rotated_giou,
)


def _giou1(c1, s1, c2, s2):
    return axis_aligned_giou(torch.tensor([c1], dtype=torch.float64),
                             torch.tensor([s1], dtype=torch.float64),
                             torch.tensor([c2], dtype=torch.float64),
                             torch.tensor([s2], dtype=torch.float64))[0, 0].item()


def test_axis_aligned_giou_known_values():
    # identical boxes
    assert _giou1([0, 0, 0], [1, 2, 3], [0, 0, 0], [1, 2, 3]) == pytest.approx(1.0)
    # unit cubes shifted by half a side on x: the hull is the union -> GIoU = IoU = 1/3
    assert _giou1([0, 0, 0], [1, 1, 1], [0.5, 0, 0], [1, 1, 1]) == pytest.approx(1 / 3)
    # shifted on x and y: inter 0.25, union 1.75, hull 2.25 -> 1/7 - 0.5/2.25
    assert _giou1([0, 0, 0], [1, 1, 1], [0.5, 0.5, 0], [1, 1, 1]) == pytest.approx(
        1 / 7 - 0.5 / 2.25)
    # disjoint unit cubes 2 m apart on x: enclosing 3, union 2 -> -1/3
    assert _giou1([0, 0, 0], [1, 1, 1], [2, 0, 0], [1, 1, 1]) == pytest.approx(-1 / 3)
    # nested: 1 m cube inside a 2 m cube -> iou 1/8, enclosing == union
    assert _giou1([0, 0, 0], [1, 1, 1], [0, 0, 0], [2, 2, 2]) == pytest.approx(1 / 8)


def test_axis_aligned_giou_is_pairwise_and_differentiable():
    c1 = torch.randn(2, 4, 3, requires_grad=True)
    s1 = torch.rand(2, 4, 3) + 0.1
    c2, s2 = torch.randn(2, 5, 3), torch.rand(2, 5, 3) + 0.1
    g = axis_aligned_giou(c1, s1, c2, s2)
    assert g.shape == (2, 4, 5)
    assert (g <= 1 + 1e-6).all() and (g >= -1 - 1e-6).all()
    # one pair equals the scalar formula
    assert g[1, 2, 3].item() == pytest.approx(
        _giou1(c1[1, 2].tolist(), s1[1, 2].tolist(), c2[1, 3].tolist(), s2[1, 3].tolist()),
        abs=1e-5)
    g.sum().backward()
    assert c1.grad is not None and torch.isfinite(c1.grad).all() and c1.grad.abs().sum() > 0


def test_rotated_giou_matches_geometry():
    box = torch.tensor([[0.0, 0.0, 0.5, 2.0, 1.0, 1.0, 0.0]])
    same = rotated_giou(box, box)
    assert same.item() == pytest.approx(1.0, abs=1e-4)
    # a 2x1 box turned 90 degrees equals a 1x2 axis-aligned box
    turned = torch.tensor([[0.0, 0.0, 0.5, 2.0, 1.0, 1.0, math.pi / 2]])
    upright = torch.tensor([[0.0, 0.0, 0.5, 1.0, 2.0, 1.0, 0.0]])
    assert rotated_giou(turned, upright).item() == pytest.approx(1.0, abs=1e-4)
    # the 2x1 box against its 90-degree turn: inter 1x1, union 3, hull 2x2 -> 1/3 - 1/4
    assert rotated_giou(box, turned).item() == pytest.approx(1 / 3 - 1 / 4, abs=1e-4)
    # a square turned 45 degrees inside its axis-aligned circumscribed square
    diamond = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, math.pi / 4]])
    hull = torch.tensor([[0.0, 0.0, 0.0, math.sqrt(2), math.sqrt(2), 1.0, 0.0]])
    assert rotated_giou(diamond, hull).item() == pytest.approx(0.5, abs=1e-4)
    # without rotation the exact and axis-aligned forms agree
    a, b = torch.rand(3, 7), torch.rand(4, 7)
    a[:, 3:6] += 0.2
    b[:, 3:6] += 0.2
    a[:, 6] = 0
    b[:, 6] = 0
    assert torch.allclose(rotated_giou(a, b),
                          axis_aligned_giou(a[:, :3], a[:, 3:6], b[:, :3], b[:, 3:6]),
                          atol=1e-4)


def test_matcher_finds_the_global_optimum_not_the_greedy_one():
    matcher = HungarianMatcher3D(cls_cost=0, objectness_cost=0, center_cost=0, giou_cost=1)
    giou = torch.tensor([[0.9, 0.8], [0.85, 0.1], [0.0, 0.0]])
    rows, cols = matcher(torch.full((3, 4), 0.25), torch.ones(3), torch.zeros(3, 2), giou,
                         torch.tensor([0, 1]))
    # greedy would take (0,0) then (1,1) for 1.0; the optimum (0,1)+(1,0) scores 1.65
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_matcher_uses_class_centre_and_objectness_costs():
    cls_prob = torch.tensor([[0.0, 0.0, 0.9, 0.0, 0.0, 0.1],
                             [0.0, 0.0, 0.1, 0.0, 0.0, 0.9]])
    labels = torch.tensor([5, 2])
    zeros = torch.zeros(2, 2)
    by_class = HungarianMatcher3D(cls_cost=1, giou_cost=0)
    rows, cols = by_class(cls_prob, torch.ones(2), zeros, zeros, labels)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
    # a centre cost that disagrees with the classes and outweighs them wins
    dist = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    by_centre = HungarianMatcher3D(cls_cost=1, center_cost=1, giou_cost=0)
    rows, cols = by_centre(cls_prob, torch.ones(2), dist, zeros, labels)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 0, 1: 1}
    # objectness picks which of three equal queries gets the single box
    by_obj = HungarianMatcher3D(cls_cost=0, objectness_cost=1, giou_cost=0)
    rows, cols = by_obj(torch.full((3, 3), 1 / 3), torch.tensor([0.1, 0.7, 0.3]),
                        torch.zeros(3, 1), torch.zeros(3, 1), torch.tensor([0]))
    assert rows.tolist() == [1] and cols.tolist() == [0]
    # no boxes: nothing matched
    rows, cols = by_obj(torch.rand(3, 3), torch.rand(3), torch.zeros(3, 0), torch.zeros(3, 0),
                        torch.zeros(0, dtype=torch.long))
    assert rows.numel() == 0 and cols.numel() == 0


def test_heading_bins_round_trip():
    coder = HeadingBinCoder(12)
    yaw = torch.linspace(-math.pi + 1e-3, math.pi, 97)
    cls, res = coder.encode(yaw)
    assert cls.min() >= 0 and cls.max() <= 11 and res.abs().max() <= 1 + 1e-5
    logits = torch.nn.functional.one_hot(cls, 12).float()
    residual = res[:, None].expand(-1, 12)
    back = coder.decode(logits, residual)
    diff = torch.remainder(back - yaw + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5
    # bin 0 is centred on yaw 0; bin 3 on pi/2
    assert coder.encode(torch.tensor([0.0, math.pi / 2]))[0].tolist() == [0, 3]
    # one bin: no heading
    c1, r1 = HeadingBinCoder(1).encode(yaw)
    assert (c1 == 0).all() and (r1 == 0).all()


def test_fourier_embedding_depends_on_position_within_the_scene():
    torch.manual_seed(0)
    emb = FourierPositionEmbedding3D(64)
    xyz = torch.rand(2, 10, 3) * 4
    lo, hi = xyz.min(1)[0], xyz.max(1)[0]
    e = emb(xyz, lo, hi)
    assert e.shape == (2, 10, 64)
    assert torch.allclose(e[..., :32] ** 2 + e[..., 32:] ** 2, torch.ones(2, 10, 32), atol=1e-5)
    # normalised by the scene box: translating scene and bounds together changes nothing
    shift = torch.tensor([3.0, -2.0, 1.0])
    assert torch.allclose(emb(xyz + shift, lo + shift, hi + shift), e, atol=1e-4)
    # different points -> different codes
    assert not torch.allclose(e[0, 0], e[0, 1])
    # the random projection is state, saved with the model
    assert 'gauss_b' in emb.state_dict()
    with pytest.raises(ValueError):
        FourierPositionEmbedding3D(63)


def test_decoder_returns_every_layer_normalised():
    dec = ThreeDETRDecoder(num_layers=3, embed_dims=32, num_heads=4, ffn_dims=64, dropout=0.0)
    q = torch.zeros(2, 5, 32)
    out = dec(q, torch.randn(2, 7, 32), torch.randn(2, 5, 32), torch.randn(2, 7, 32))
    assert out.shape == (3, 2, 5, 32)
    assert torch.allclose(out.mean(-1), torch.zeros(3, 2, 5), atol=1e-5)  # LayerNorm'd
    assert not torch.allclose(out[0], out[-1])


def _targets(centers, sizes, labels, extent=10.0):
    g = centers.shape[1]
    return dict(centers=centers, sizes=sizes, centers_norm=centers / extent,
                sizes_norm=sizes / extent, labels=labels, yaw=torch.zeros(1, g),
                heading_cls=torch.zeros(1, g, dtype=torch.long), heading_res=torch.zeros(1, g),
                num_gt=torch.tensor([g]), num_boxes=float(g))


def _preds(centers, sizes, cls_logits, extent=10.0):
    return dict(cls_logits=cls_logits, center=centers, center_norm=centers / extent,
                size=sizes, size_norm=sizes / extent, yaw=torch.zeros(centers.shape[:2]),
                heading_logits=None, heading_residual=None)


def test_set_loss_is_zero_for_perfect_boxes_and_grows_with_errors():
    loss = ThreeDETRSetLoss(num_classes=3)
    gt_c = torch.tensor([[[1.0, 1.0, 0.5], [4.0, 2.0, 1.0]]])
    gt_s = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 0.5]]])
    tg = _targets(gt_c, gt_s, torch.tensor([[2, 0]]))
    # query 1 is box 1, query 2 is box 0, query 0 is background; confident logits
    centers = torch.stack([torch.tensor([[8.0, 8.0, 8.0]]), gt_c[0, 1:], gt_c[0, :1]], 1)
    sizes = torch.stack([torch.tensor([[0.2, 0.2, 0.2]]), gt_s[0, 1:], gt_s[0, :1]], 1)
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 3] = logits[0, 1, 0] = logits[0, 2, 2] = 10.0
    perfect = loss(_preds(centers, sizes, logits), tg)
    assert set(perfect) == {'loss_cls', 'loss_center', 'loss_size', 'loss_giou'}
    for k, v in perfect.items():
        assert v.item() == pytest.approx(0.0, abs=1e-4), k
    gt_index, matched = loss.match(_preds(centers, sizes, logits), tg,
                                   axis_aligned_giou(centers, sizes, gt_c, gt_s),
                                   torch.cdist(centers / 10, gt_c / 10, p=1))
    assert matched.tolist() == [[0, 1, 1]] and gt_index[0, 1:].tolist() == [1, 0]
    # moving a box by 0.3 m costs 5 * 0.03 (L1 of normalised centres) / 2 boxes
    moved = centers.clone()
    moved[0, 2, 0] += 0.3
    worse = loss(_preds(moved, sizes, logits), tg)
    assert worse['loss_center'].item() == pytest.approx(5 * 0.03 / 2, rel=1e-4)
    assert worse['loss_giou'].item() > 0.05
    # wrong class on a matched query raises only the class term
    wrong = logits.clone()
    wrong[0, 2, 2], wrong[0, 2, 1] = -10.0, 10.0
    assert loss(_preds(centers, sizes, wrong), tg)['loss_cls'].item() > 1.0


def test_set_loss_heading_terms_and_gradients():
    loss = ThreeDETRSetLoss(num_classes=2, giou_weight=0.0,
                            matcher=dict(type='HungarianMatcher3D', cls_cost=1,
                                         objectness_cost=5, center_cost=5, giou_cost=3))
    coder = HeadingBinCoder(12)
    gt_yaw = torch.tensor([[0.4, -2.0]])
    tg = _targets(torch.tensor([[[1.0, 1.0, 0.5], [4.0, 2.0, 1.0]]]),
                  torch.tensor([[[1.0, 2.0, 1.0], [2.0, 1.0, 0.5]]]), torch.tensor([[1, 0]]))
    tg['yaw'] = gt_yaw
    tg['heading_cls'], tg['heading_res'] = coder.encode(gt_yaw)
    centers = tg['centers'].clone().requires_grad_(True)
    heading_logits = torch.zeros(1, 2, 12, requires_grad=True)
    heading_res = torch.zeros(1, 2, 12, requires_grad=True)
    preds = _preds(centers, tg['sizes'], torch.zeros(1, 2, 3, requires_grad=True))
    preds.update(heading_logits=heading_logits, heading_residual=heading_res,
                 yaw=coder.decode(heading_logits, heading_res))
    out = loss(preds, tg)
    assert 'loss_giou' not in out
    assert out['loss_heading_cls'].item() == pytest.approx(0.1 * math.log(12), rel=1e-4)
    assert out['loss_heading_reg'].item() > 0
    sum(out.values()).backward()
    assert heading_logits.grad.abs().sum() > 0 and heading_res.grad.abs().sum() > 0


def test_random_cuboid_crops_points_boxes_and_masks_together():
    import numpy as np
    from mmdet3d.structures import DepthInstance3DBoxes, DepthPoints

    from concept_distill.datasets.transforms import RandomCuboid3D

    rng = np.random.default_rng(0)
    xyz = rng.uniform([0, 0, 0], [8, 8, 3], size=(5000, 3)).astype(np.float32)
    boxes = DepthInstance3DBoxes(torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0],
                                               [7.0, 7.0, 0.5, 0.5, 0.5, 0.5, 0.0]]),
                                 origin=(0.5, 0.5, 0.5))

    def results():
        return dict(points=DepthPoints(torch.from_numpy(xyz), points_dim=3),
                    gt_bboxes_3d=boxes.clone(), gt_labels_3d=np.array([3, 5]),
                    pts_instance_mask=np.arange(5000), pts_semantic_mask=np.arange(5000) % 7)

    np.random.seed(0)
    crop = RandomCuboid3D(min_points=500, min_crop=0.5, max_crop=0.8)
    for _ in range(5):
        out = crop(results())
        kept = out['pts_instance_mask']
        n = len(out['points'])
        assert 500 <= n < 5000 and len(kept) == n == len(out['pts_semantic_mask'])
        assert np.allclose(out['points'].coord.numpy(), xyz[kept])  # rows kept in step
        lo, hi = xyz[kept].min(0), xyz[kept].max(0)
        centres = out['gt_bboxes_3d'].gravity_center.numpy()
        assert 1 <= len(centres) == len(out['gt_labels_3d'])
        assert ((centres >= lo) & (centres <= hi)).all()
    # no crop can hold more points than the scene: left unchanged
    same = RandomCuboid3D(min_points=6000)(results())
    assert len(same['points']) == 5000 and len(same['gt_bboxes_3d']) == 2
