"""Packing a paired sample into model inputs and a Det3DDataSample."""
from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample

from concept_distill.datasets.transforms.frustum_point_pairing import UV_ATTR, split_uv

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

    def transform(self, results: dict) -> dict:
        points = results['points']
        if UV_ATTR not in (points.attribute_dims or {}):
            raise KeyError('PackPairedInputs needs points with pixel_uv: put '
                           'FrustumPointPairing earlier in the pipeline')
        points, uv = split_uv(points)
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
        inputs = dict(points=points.tensor.float())
        if 'img' in results:
            img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
            inputs['img'] = torch.from_numpy(img)
        sample = Det3DDataSample()
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        sample.pixel_uv = uv.float()
        if 'teacher_global' in results:
            sample.teacher_global = torch.as_tensor(results['teacher_global']).float()
        if 'teacher_tokens' in results:
            sample.teacher_tokens = torch.as_tensor(results['teacher_tokens']).float()
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
