"""Loading a frame's RGB image (and depth map) for pairing."""
from __future__ import annotations

import os

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from PIL import Image

from concept_distill.datasets.converters.scannet_info import DEPTH_SHIFT
from concept_distill.datasets.frame_pairs import PAIRS_KEY
from concept_distill.datasets.frustum_pairing import PairedDataError


def scale_pixels(sx: float, sy: float) -> np.ndarray:
    """3x3 map of pixel coordinates under a resize by (sx, sy), pixel centres preserved."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def apply_to_projection(results: dict, pix: np.ndarray, key: str = 'lidar2img') -> None:
    """Left-multiply a 3x3 pixel map into the 4x4 points->pixels matrix `results[key]`."""
    proj = np.array(results[key], dtype=np.float64)
    proj[:3] = pix @ proj[:3]
    results[key] = proj


@TRANSFORMS.register_module()
class LoadPairedImage(BaseTransform):
    """Load `img_path` as RGB uint8 (H, W, 3) and, if there is one, `depth_path` in metres.

    Args:
        with_pixels: decode the image; False reads only its size (enough for pairing when
            the teacher's features come from the cache).
        with_depth: load the depth map for the occlusion test when the frame has one.
        decode_size: (H, W) the image will later be resized to; JPEGs are then decoded at
            the smallest 1/2^k scale that still covers it (libjpeg DCT scaling), which is
            several times faster than decoding full ScanNet frames. The projection follows.

    Adds `img` (if with_pixels), `img_shape`, `ori_shape`, `depth_map` (float32 metres,
    0 = no reading) and updates `lidar2img` for the decode scale. A missing or undecodable
    file raises `PairedDataError` naming it. A frame with precomputed pairs needs no depth
    frame (it is not read).
    """

    def __init__(self, with_pixels: bool = True, with_depth: bool = True,
                 decode_size: tuple[int, int] | None = None) -> None:
        self.with_pixels = with_pixels
        self.with_depth = with_depth
        self.decode_size = tuple(decode_size) if decode_size is not None else None

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        if not os.path.isfile(path):
            raise PairedDataError(f'image file not found: {path}', path, 'missing_image')
        try:
            with Image.open(path) as im:
                w0, h0 = im.size
                if self.with_pixels:
                    if self.decode_size is not None and im.format == 'JPEG':
                        im.draft('RGB', (self.decode_size[1], self.decode_size[0]))
                    img = np.asarray(im.convert('RGB'))
        except (OSError, SyntaxError, ValueError) as err:
            raise PairedDataError(f'corrupt image file {path}: {err}', path,
                                  'corrupt_image') from err
        results['ori_shape'] = (h0, w0)
        if self.with_pixels:
            h, w = img.shape[:2]
            if (h, w) != (h0, w0):
                apply_to_projection(results, scale_pixels(w / w0, h / h0))
            results['img'] = img
            results['img_shape'] = (h, w)
        else:
            results['img_shape'] = (h0, w0)

        depth_path = results.get('depth_path')
        if self.with_depth and depth_path:
            pairs = results.get(PAIRS_KEY)
            if pairs is not None:  # the occlusion test ran when the pairs were prepared
                pairs.occlusion_test = True
            else:
                results['depth_map'] = self._load_depth(depth_path, results.get('depth_shift'))
        return results

    @staticmethod
    def _load_depth(path: str, shift: float | None) -> np.ndarray:
        if not os.path.isfile(path):
            raise PairedDataError(f'depth file not found: {path}', path, 'missing_depth')
        try:
            with Image.open(path) as im:
                depth = np.asarray(im, dtype=np.float32)
        except (OSError, SyntaxError, ValueError) as err:
            raise PairedDataError(f'corrupt depth file {path}: {err}', path,
                                  'corrupt_depth') from err
        if depth.ndim != 2:
            raise PairedDataError(f'depth file {path} is not a single-channel image', path,
                                  'corrupt_depth')
        return depth / float(shift or DEPTH_SHIFT)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(with_pixels={self.with_pixels}, '
                f'with_depth={self.with_depth}, decode_size={self.decode_size})')
