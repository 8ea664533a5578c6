"""Resizing/cropping a frame to the teacher's input size, keeping the projection exact."""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from PIL import Image

from concept_distill.datasets.transforms.load_paired_image import apply_to_projection, scale_pixels


@TRANSFORMS.register_module()
class ResizeCropForTeacher(BaseTransform):
    """Resize (and crop) `img` to `size` and update `lidar2img` so pairing stays exact.

    Run it before `FrustumPointPairing`: points outside a crop are then not paired.

    Args:
        size: (H, W) of the output, e.g. (224, 224) for ViT-B/16.
        mode: 'squash' resizes the whole frame to `size` (aspect not kept; every point the
            frame sees stays in the image; CLIPTeacher's default, so the teacher's own
            resize is then a no-op); 'shortest' scales the short side to fit and crops.
        crop: 'center' or 'random' (mode 'shortest' only; random crops need the online
            teacher, as cached features belong to the centre crop).
    """

    def __init__(self, size: tuple[int, int] = (224, 224), mode: str = 'squash',
                 crop: str = 'center') -> None:
        if mode not in ('squash', 'shortest'):
            raise ValueError(f"mode must be 'squash' or 'shortest', got {mode!r}")
        if crop not in ('center', 'random'):
            raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode
        self.crop = crop

    def describe(self) -> dict:
        """The image preprocessing as plain data (part of the teacher-cache key)."""
        return dict(type=type(self).__name__, size=list(self.size), mode=self.mode,
                    crop=self.crop)

    def transform(self, results: dict) -> dict:
        h, w = results['img_shape'][:2]
        th, tw = self.size
        if self.mode == 'squash':
            sx, sy = tw / w, th / h
            rh, rw = th, tw
        else:
            s = max(th / h, tw / w)
            rh, rw = max(th, round(h * s)), max(tw, round(w * s))
            sx, sy = rw / w, rh / h
        pix = scale_pixels(sx, sy)
        top = left = 0
        if (rh, rw) != (th, tw):
            if self.crop == 'random':
                top = int(np.random.randint(0, rh - th + 1))
                left = int(np.random.randint(0, rw - tw + 1))
            else:
                top, left = (rh - th) // 2, (rw - tw) // 2
            pix = np.array([[1.0, 0, -left], [0, 1.0, -top], [0, 0, 1.0]]) @ pix
        if 'img' in results:
            img = results['img']
            if (rh, rw) != img.shape[:2]:
                img = np.asarray(Image.fromarray(img).resize((rw, rh), Image.BICUBIC))
            results['img'] = np.ascontiguousarray(img[top:top + th, left:left + tw])
        apply_to_projection(results, pix)
        results['img_shape'] = (th, tw)
        # Composite pixel map from the decoded image, for tools that draw on the original.
        results['img_pixel_map'] = pix @ np.asarray(results.get('img_pixel_map', np.eye(3)))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size}, mode={self.mode!r}, crop={self.crop!r})'
