"""Batching of single-object clouds for the object classifier and part segmentor."""
from __future__ import annotations

import torch
from mmdet3d.registry import MODELS
from mmengine.model import BaseDataPreprocessor


@MODELS.register_module()
class ObjectDataPreprocessor(BaseDataPreprocessor):
    """Moves a collated batch to the model's device and stacks the clouds to (B, N, C).

    Expects mmengine's `pseudo_collate` output of `PackObjectInputs` items:
    ``inputs=dict(points=[Tensor (N, C)] * B)``; every cloud must have the same N (sample a
    fixed number with `ObjectPointSample`).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """dict(inputs=dict(points=(B, N, C) float), data_samples=list) on the device."""
        data = self.cast_data(data)
        points = data['inputs']['points']
        if isinstance(points, (list, tuple)):
            shapes = sorted({tuple(p.shape) for p in points})
            if len(shapes) > 1:
                raise ValueError(f'clouds of one batch must have the same shape, got {shapes}: '
                                 'sample a fixed number of points (ObjectPointSample)')
            points = torch.stack(list(points))
        return dict(inputs=dict(points=points.float()), data_samples=data.get('data_samples'))
