"""mmdet3d's `GlobalAlignment` + `RandomFlip3D` + `GlobalRotScaleTrans` as one affine map.

The chain runs three transforms, each a pass over the points structure (torch matmul, einsum
rotation, flips, scaling, translation, checks). `PairedPointAugment` draws the same random
numbers from `np.random`, in the same order and from the same distributions, composes the
alignment, flips, rotation and scale into one 3x3 matrix plus a translation and applies it
once, in float32, to the kept points: with the same `np.random` seed it gives the chain's
points (up to float32 round-off: the chain rounds after every step, this once) and the same
metadata keys (`flip`, `pcd_horizontal_flip`, `pcd_vertical_flip`, `pcd_rotation`,
`pcd_rotation_angle`, `pcd_scale_factor`, `pcd_trans`, `transformation_3d_flow`).
`tests/test_datasets/test_paired_point_augment.py` checks both against the chain.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures.points import DepthPoints

# The chain's transforms, as they appear in a pipeline (see `fuse_point_augmentations`).
CHAIN = ('GlobalAlignment', 'RandomFlip3D', 'GlobalRotScaleTrans')


def _pair(value, name: str) -> tuple[float, float]:
    """GlobalRotScaleTrans' range arguments: a number x means (-x, x)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        lo, hi = value
        return float(lo), float(hi)
    if isinstance(value, (int, float)):
        return -float(value), float(value)
    raise TypeError(f'{name} must be a number or a (low, high) pair, got {value!r}')


@TRANSFORMS.register_module()
class PairedPointAugment(BaseTransform):
    """GlobalAlignment (optional) + RandomFlip3D + GlobalRotScaleTrans on DEPTH points, fused.

    Same arguments and defaults as the mmdet3d transforms it replaces; `align_rotation_axis`
    is GlobalAlignment's `rotation_axis` (None: no alignment, as a pipeline without
    GlobalAlignment). Points keep their structure and columns: xyz are mapped, `height` is
    scaled with `shift_height`, the other attributes (pixel_uv, colours) are untouched, as in
    the chain. When the sample holds an image (`img`), it is flipped by mmdet's RandomFlip,
    exactly as RandomFlip3D does it. Samples with 3D boxes are refused (the chain moves
    them; paired samples have none).

    Args:
        align_rotation_axis: rotate and translate by `axis_align_matrix` first; the matrix
            must be a rotation about this axis (GlobalAlignment's check).
        sync_2d, flip_ratio_bev_horizontal, flip_ratio_bev_vertical: as RandomFlip3D.
        rot_range, scale_ratio_range, translation_std, shift_height: as GlobalRotScaleTrans.
    """

    def __init__(self, align_rotation_axis: int | None = None, sync_2d: bool = True,
                 flip_ratio_bev_horizontal: float = 0.0, flip_ratio_bev_vertical: float = 0.0,
                 rot_range: float | Sequence[float] = (-0.78539816, 0.78539816),
                 scale_ratio_range: Sequence[float] = (0.95, 1.05),
                 translation_std: float | Sequence[float] = (0, 0, 0),
                 shift_height: bool = False) -> None:
        if align_rotation_axis not in (None, 0, 1, 2):
            raise ValueError(f'align_rotation_axis must be None, 0, 1 or 2, got '
                             f'{align_rotation_axis!r}')
        for name, ratio in (('flip_ratio_bev_horizontal', flip_ratio_bev_horizontal),
                            ('flip_ratio_bev_vertical', flip_ratio_bev_vertical)):
            if not (isinstance(ratio, (int, float)) and 0 <= ratio <= 1):
                raise ValueError(f'{name} must be a number in [0, 1], got {ratio!r}')
        if not isinstance(translation_std, (list, tuple, np.ndarray)):
            translation_std = [translation_std] * 3
        if len(translation_std) != 3 or any(s < 0 for s in translation_std):
            raise ValueError(f'translation_std must be 3 values >= 0, got {translation_std!r}')
        if not isinstance(scale_ratio_range, (list, tuple, np.ndarray)):
            raise TypeError(f'scale_ratio_range must be a (low, high) pair, got '
                            f'{scale_ratio_range!r}')
        self.align_rotation_axis = align_rotation_axis
        self.sync_2d = sync_2d
        self.flip_ratio_bev_horizontal = flip_ratio_bev_horizontal
        self.flip_ratio_bev_vertical = flip_ratio_bev_vertical
        self.rot_range = _pair(rot_range, 'rot_range')
        self.scale_ratio_range = _pair(scale_ratio_range, 'scale_ratio_range')
        # float32, as GlobalRotScaleTrans passes it to np.random.normal (same values).
        self.translation_std = np.array(translation_std, dtype=np.float32)
        self.shift_height = shift_height
        self._image_flip = None  # built on the first sample with an image

    # -- the chain's random draws, in its order ------------------------------------------
    def _flips(self, results: dict) -> tuple[bool, bool]:
        """RandomFlip3D's decisions (and its image flip, when the sample holds an image)."""
        if 'img' in results:
            if self._image_flip is None:
                from mmdet.datasets.transforms import RandomFlip
                from mmdet3d.datasets.transforms import RandomFlip3D

                # RandomFlip3D's own image path: mmdet's RandomFlip.transform run on a
                # RandomFlip3D (its _flip_on_direction honours a preset `flip`).
                flipper = RandomFlip3D(sync_2d=self.sync_2d,
                                       flip_ratio_bev_horizontal=self.flip_ratio_bev_horizontal,
                                       flip_ratio_bev_vertical=self.flip_ratio_bev_vertical)
                self._image_flip = (RandomFlip.transform, flipper)
            fn, flipper = self._image_flip
            fn(flipper, results)
        if self.sync_2d and 'img' in results:
            results['pcd_horizontal_flip'] = results['flip']
            results['pcd_vertical_flip'] = False
        else:
            if 'pcd_horizontal_flip' not in results:
                results['pcd_horizontal_flip'] = bool(
                    np.random.rand() < self.flip_ratio_bev_horizontal)
            if 'pcd_vertical_flip' not in results:
                results['pcd_vertical_flip'] = bool(
                    np.random.rand() < self.flip_ratio_bev_vertical)
        return results['pcd_horizontal_flip'], results['pcd_vertical_flip']

    def _alignment(self, results: dict) -> tuple[np.ndarray, np.ndarray]:
        """(rotation (3, 3), translation (3,)) of `axis_align_matrix`, checked as
        GlobalAlignment checks it, rounded to float32 as the chain applies them."""
        if 'axis_align_matrix' not in results:
            raise KeyError('PairedPointAugment(align_rotation_axis=...) needs '
                           'axis_align_matrix in the sample')
        m = np.asarray(results['axis_align_matrix'])
        if m.shape != (4, 4):
            raise ValueError(f'invalid shape {m.shape} for axis_align_matrix')
        rot = m[:3, :3]
        axis = self.align_rotation_axis
        unit = np.zeros(3)
        unit[axis] = 1.0
        (a, b, c), (d, e, f), (g, h, i) = rot.tolist()
        det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
        # GlobalAlignment's test: det close to 1 (np.allclose), the axis row/column exact.
        if (abs(det - 1.0) > 1e-8 + 1e-5 or not (rot[axis] == unit).all()
                or not (rot[:, axis] == unit).all()):
            raise ValueError(f'invalid rotation matrix {rot} (axis {axis})')
        return rot.astype(np.float32), m[:3, 3].astype(np.float32)

    def transform(self, results: dict) -> dict:
        """Align, flip, rotate, scale and translate `points` in one pass."""
        if 'gt_bboxes_3d' in results:
            raise ValueError('PairedPointAugment does not move 3D boxes; use mmdet3d\'s '
                             'RandomFlip3D + GlobalRotScaleTrans for samples with boxes')
        points = results['points']
        if not isinstance(points, DepthPoints):  # other types flip other axes
            raise TypeError(f'PairedPointAugment handles DEPTH points (z up), got '
                            f'{type(points).__name__}')
        if self.shift_height and 'height' not in (points.attribute_dims or {}):
            raise KeyError('shift_height=True but the points have no height attribute')
        flow = results.setdefault('transformation_3d_flow', [])
        hflip, vflip = self._flips(results)
        if hflip:
            flow.append('HF')
        if vflip:
            flow.append('VF')
        angle = np.random.uniform(*self.rot_range)
        if 'pcd_scale_factor' not in results:
            results['pcd_scale_factor'] = np.random.uniform(*self.scale_ratio_range)
        scale = results['pcd_scale_factor']
        # np.random.normal(scale=std, size=3) is 0 + std * standard_normal(3) in the legacy
        # generator: the same draws and values, without its broadcasting set-up.
        trans = np.random.standard_normal(3) * self.translation_std.astype(np.float64)
        flow.extend(['R', 'S', 'T'])

        # The rotation as mmdet3d builds it (float32 torch sin/cos), so pcd_rotation is
        # bit-identical and the map below uses the values the chain multiplies by.
        sin_cos = torch.tensor([angle], dtype=torch.float32)
        s, c = torch.sin(sin_cos).item(), torch.cos(sin_cos).item()
        rot_t = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
        results['pcd_rotation'] = torch.tensor(rot_t, dtype=torch.float32)
        results['pcd_rotation_angle'] = angle
        results['pcd_trans'] = trans

        # Row vectors: p' = p @ M + b, composed in float64 from the chain's float32 factors.
        m = rot_t.copy()
        if vflip:  # flipping y before the rotation negates the rotation's row for y
            m[1] = -m[1]
        if hflip:
            m[0] = -m[0]
        offset = np.zeros(3)
        if self.align_rotation_axis is not None:
            rot, shift = self._alignment(results)
            offset = shift.astype(np.float64) @ m
            m = rot.T.astype(np.float64) @ m
        m *= scale
        offset = offset * scale + trans.astype(np.float32)
        arr = points.tensor.numpy()  # shares memory: the chain also works in place
        _affine_xyz(arr, m.astype(np.float32), offset.astype(np.float32))
        if self.shift_height:
            arr[:, points.attribute_dims['height']] *= scale
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(align_rotation_axis={self.align_rotation_axis}, '
                f'sync_2d={self.sync_2d}, '
                f'flip_ratio_bev_horizontal={self.flip_ratio_bev_horizontal}, '
                f'flip_ratio_bev_vertical={self.flip_ratio_bev_vertical}, '
                f'rot_range={list(self.rot_range)}, '
                f'scale_ratio_range={list(self.scale_ratio_range)}, '
                f'translation_std={self.translation_std.tolist()}, '
                f'shift_height={self.shift_height})')


def _affine_xyz(arr: np.ndarray, m: np.ndarray, offset: np.ndarray) -> None:
    """arr[:, :3] = arr[:, :3] @ m + offset, in place, column by column."""
    # On the (N, C) rows the points structure holds, a matmul of the strided xyz block plus
    # the write back costs about twice these 9 multiply-adds on contiguous column copies.
    x, y, z = arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()
    for j in range(3):
        col = x * m[0, j]
        col += y * m[1, j]
        col += z * m[2, j]
        col += offset[j]
        arr[:, j] = col


def fuse_point_augmentations(pipeline: list[dict]) -> list[dict]:
    """A copy of `pipeline` with a run of GlobalAlignment / RandomFlip3D /
    GlobalRotScaleTrans (in that order, GlobalAlignment and RandomFlip3D optional) replaced
    by one PairedPointAugment with the same parameters. Transforms between them are not
    allowed (the run must be contiguous); a pipeline without GlobalRotScaleTrans is
    returned unchanged."""
    out = [dict(t) for t in pipeline]
    types = [t['type'] for t in out]
    if 'GlobalRotScaleTrans' not in types:
        return out
    end = types.index('GlobalRotScaleTrans')
    start = end
    # Walk back over the transforms the chain allows before the current one.
    while start > 0 and types[start - 1] in CHAIN[:CHAIN.index(types[start])]:
        start -= 1
    if any(t in CHAIN for t in types[:start] + types[end + 1:]):
        raise ValueError(f'cannot fuse {types}: the mmdet3d augmentations must be '
                         f'contiguous and in the order {CHAIN}')
    fused = dict(type='PairedPointAugment')
    for t in out[start:end + 1]:
        args = {k: v for k, v in t.items() if k != 'type'}
        if t['type'] == 'GlobalAlignment':
            fused['align_rotation_axis'] = args.pop('rotation_axis')
        if t['type'] == 'RandomFlip3D' and args.pop('flip_box3d', True) is not True:
            raise ValueError('RandomFlip3D(flip_box3d=False) has no fused equivalent')
        fused.update(args)
    return out[:start] + [fused] + out[end + 1:]
