"""Packing a paired sample into model inputs and a Det3DDataSample."""
from __future__ import annotations

import copy

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample

from concept_distill.datasets.transforms.frustum_point_pairing import UV_ATTR

DEFAULT_META_KEYS = ('frame_id', 'scene_id', 'img_path', 'lidar_path', 'ori_shape', 'img_shape',
                     'num_visible_points', 'lidar2img', 'axis_align_matrix', 'flip',
                     'pcd_horizontal_flip', 'pcd_vertical_flip', 'pcd_rotation',
                     'pcd_scale_factor', 'transformation_3d_flow')


@TRANSFORMS.register_module()
class PackPairedInputs(BaseTransform):
    """-> dict(inputs=dict(points (N, C) float32[, img (3, H, W) uint8]),
    data_samples=Det3DDataSample with .pixel_uv (N, 2) and, from the cache,
    .teacher_global (D,) / .teacher_tokens (T, D)).

    The pixel coordinates leave the point features here. When an image flip (mmdet's
    `RandomFlip`, e.g. inside `RandomFlip3D`) flipped `img`, the coordinates are flipped with
    it; an image flip together with cached teacher features is an error, since the cache
    holds the unflipped frame's features.
    """

    def __init__(self, meta_keys: tuple[str, ...] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)
        self._index: dict = {}  # (points_dim, pixel columns) -> column index tensors

    def transform(self, results: dict) -> dict:
        points = results['points']
        attrs = points.attribute_dims or {}
        if UV_ATTR not in attrs:
            raise KeyError('PackPairedInputs needs points with pixel_uv: put '
                           'FrustumPointPairing earlier in the pipeline')
        rest, uv = self._split(points.tensor, tuple(attrs[UV_ATTR]))
        h, w = results['img_shape'][:2]
        if results.get('flip') and 'img' in results:
            if 'teacher_global' in results:
                raise ValueError('an image flip cannot be combined with cached teacher '
                                 'features; set the flip ratio of the image to 0 or use the '
                                 'online teacher')
            direction = results.get('flip_direction', 'horizontal')
            if direction in ('horizontal', 'diagonal'):
                uv[:, 0] = (w - 1) - uv[:, 0]
            if direction in ('vertical', 'diagonal'):
                uv[:, 1] = (h - 1) - uv[:, 1]
        inputs = dict(points=rest.float())
        if 'img' in results:
            img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
            inputs['img'] = torch.from_numpy(img)
        sample = Det3DDataSample()
        # What set_metainfo does, with a copy made per type instead of copy.deepcopy (its
        # generic walk, tensors included, was half of the packing).
        for k in self.meta_keys:
            if k in results:
                sample.set_field(_copied(results[k]), k, field_type='metainfo')
        sample.pixel_uv = uv.float()
        if 'teacher_global' in results:
            sample.teacher_global = torch.as_tensor(results['teacher_global']).float()
        if 'teacher_tokens' in results:
            sample.teacher_tokens = torch.as_tensor(results['teacher_tokens']).float()
        return dict(inputs=inputs, data_samples=sample)

    def _split(self, tensor: torch.Tensor, cols: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """(the columns other than `cols`, the `cols`), each a new contiguous tensor: what
        split_uv gives, without its column indexing and the points structure it builds."""
        key = (tensor.shape[1], cols)
        index = self._index.get(key)
        if index is None:
            keep = [c for c in range(tensor.shape[1]) if c not in cols]
            index = self._index[key] = (torch.tensor(keep), torch.tensor(cols))
        # index_select copies the columns once, faster than advanced indexing or clone of a
        # strided slice.
        return tensor.index_select(1, index[0]), tensor.index_select(1, index[1])

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'


def _copied(value):
    """A copy of a metadata value sharing nothing with it (as copy.deepcopy gives) for the
    types samples carry; anything else goes through copy.deepcopy."""
    if value is None or isinstance(value, (str, int, float, bool, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_copied(v) for v in value)
    return copy.deepcopy(value)
