"""RandomCuboid: 3DETR's crop augmentation, as an mmdet3d pipeline transform."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomCuboid3D(BaseTransform):
    """Keep the points inside a random axis-aligned cuboid (and the boxes centred in it).

    The cuboid's side along each axis is a random fraction in [min_crop, max_crop] of the
    scene's extent; it is centred on a random point. A crop is accepted if at least one
    pair of its sides has a ratio >= ``aspect``, it holds >= ``min_points`` points and
    (when the scene has boxes) it keeps at least one box centre. After ``max_trials``
    rejected crops the sample is left unchanged.

    Required keys: points, gt_bboxes_3d, gt_labels_3d. Modified keys: the same, plus
    pts_instance_mask / pts_semantic_mask when present.
    """

    def __init__(self, min_points: int = 30000, aspect: float = 0.8, min_crop: float = 0.5,
                 max_crop: float = 1.0, max_trials: int = 100):
        self.min_points = min_points
        self.aspect = aspect
        self.min_crop = min_crop
        self.max_crop = max_crop
        self.max_trials = max_trials

    def _aspect_ok(self, frac: np.ndarray) -> bool:
        pairs = ((0, 1), (0, 2), (1, 2))
        return any(min(frac[i], frac[j]) / max(frac[i], frac[j]) >= self.aspect
                   for i, j in pairs)

    def transform(self, results: dict) -> dict:
        """Crop ``results`` in place (or leave it as is when no crop qualifies)."""
        points = results['points']
        xyz = points.coord.numpy()
        if len(xyz) < self.min_points:
            return results
        extent = xyz.max(0) - xyz.min(0)
        boxes = results.get('gt_bboxes_3d')
        centers = boxes.gravity_center.numpy() if boxes is not None else np.zeros((0, 3))
        for _ in range(self.max_trials):
            frac = np.random.uniform(self.min_crop, self.max_crop, size=3)
            if not self._aspect_ok(frac):
                continue
            middle = xyz[np.random.randint(len(xyz))]
            half = extent * frac / 2
            inside = np.all((xyz >= middle - half) & (xyz <= middle + half), axis=1)
            if inside.sum() < self.min_points:
                continue
            keep_boxes = np.ones(len(centers), dtype=bool)
            if len(centers):
                lo, hi = xyz[inside].min(0), xyz[inside].max(0)
                keep_boxes = np.all((centers >= lo) & (centers <= hi), axis=1)
                if not keep_boxes.any():
                    continue
            results['points'] = points[torch.from_numpy(inside)]
            for key in ('pts_instance_mask', 'pts_semantic_mask'):
                if key in results:
                    results[key] = results[key][inside]
            if boxes is not None:
                results['gt_bboxes_3d'] = boxes[torch.from_numpy(keep_boxes)]
                results['gt_labels_3d'] = results['gt_labels_3d'][keep_boxes]
            return results
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_points={self.min_points}, '
                f'aspect={self.aspect}, crop=[{self.min_crop}, {self.max_crop}])')
