"""A dataset of (image, points seen by that image) pairs over ScanNet- or SUN RGB-D-format infos."""
from __future__ import annotations

import logging
import os.path as osp
from collections import Counter

import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from concept_distill.datasets.frustum_pairing import PairedDataError, as_mat4
from concept_distill.datasets.skipped_frames import attach_skipped

# SUN RGB-D's `depth2img` comes from its MATLAB toolbox, whose pixel coordinates start at 1:
# on the real fixture, shifting projections by -1 px takes the point/pixel colour error from
# 0.025 to 0.000 (the point colours were read from exactly those pixels).
SUNRGBD_PIXEL_ORIGIN = 1.0


@DATASETS.register_module()
class PairedFrameDataset(BaseDataset):
    """One item per RGB(-D) frame: the frame's image and the points of its scene it sees.

    Reads mmdet3d v2 infos: ScanNet-format entries with `frames` (docs/architecture.md) give
    one item per kept frame; SUN RGB-D-format entries (`images.CAM0.depth2img`) give one item
    per entry. Each item carries `lidar_points`, `img_path`, `depth_path`, `lidar2img`
    (stored points -> image pixels), `lidar2depth`, `axis_align_matrix` and `frame_id` for
    the pipeline (`LoadScenePoints`, `LoadPairedImage`, `ResizeCropForTeacher`,
    `FrustumPointPairing`, 3D augmentations, `PackPairedInputs`).

    Frames with a non-finite pose are dropped when the infos are read; frames whose files
    are missing/corrupt or that see too few points (`PairedDataError` in the pipeline) are
    replaced by another frame when `skip_bad_frames`. Both are counted in `skip_counts` and
    logged with the file's name.

    Args:
        data_root: dataset root.
        ann_file: info file (relative to data_root).
        data_prefix: folders of points (`pts`), images (`img`) and depth maps (`depth`,
            defaults to `img`) relative to data_root.
        frame_stride: keep every n-th frame of each scene.
        max_frames_per_scene: cap on frames per scene after the stride (evenly spaced).
        skip_bad_frames: replace unreadable frames (False: raise the error).
        pixel_origin: pixel coordinate of the first pixel's centre in the infos'
            intrinsics; None = 0 for ScanNet frames, 1 for SUN RGB-D (MATLAB) entries.
    """

    METAINFO = dict(dataset='paired_frames')

    def __init__(self, data_root: str, ann_file: str,
                 data_prefix: dict | None = None, frame_stride: int = 1,
                 max_frames_per_scene: int | None = None, skip_bad_frames: bool = True,
                 pixel_origin: float | None = None, max_refetch: int = 100,
                 **kwargs) -> None:
        prefix = dict(pts='points', img='', depth=None)
        prefix.update(data_prefix or {})
        if prefix['depth'] is None:
            prefix['depth'] = prefix['img']
        self.frame_stride = max(int(frame_stride), 1)
        self.max_frames_per_scene = max_frames_per_scene
        self.skip_bad_frames = skip_bad_frames
        self.pixel_origin = pixel_origin
        self.skip_counts: Counter = Counter()
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=prefix,
                         max_refetch=max_refetch, **kwargs)

    # ------------------------------------------------------------------ reading the infos
    def parse_data_info(self, info: dict) -> list[dict]:
        """Expand one scene entry into its frames (SUN RGB-D: a single frame)."""
        lidar_path = osp.join(self.data_prefix['pts'], info['lidar_points']['lidar_path'])
        scene = osp.splitext(osp.basename(info['lidar_points']['lidar_path']))[0]
        base = dict(
            lidar_points=dict(lidar_path=lidar_path,
                              num_pts_feats=info['lidar_points'].get('num_pts_feats', 6)),
            lidar_path=lidar_path,
            scene_id=scene,
            axis_align_matrix=np.asarray(info.get('axis_align_matrix', np.eye(4)),
                                         dtype=np.float64),
        )
        if 'frames' in info:
            return self._scannet_frames(info['frames'], base)
        cam = (info.get('images') or {}).get('CAM0')
        if cam is not None and 'depth2img' in cam:
            return [self._sunrgbd_frame(cam, base, info)]
        raise KeyError(f'info of {lidar_path} has neither `frames` (ScanNet) nor '
                       f'`images.CAM0.depth2img` (SUN RGB-D): re-create the infos with '
                       f'tools/create_data.py')

    def _scannet_frames(self, frames: list[dict], base: dict) -> list[dict]:
        frames = frames[::self.frame_stride]
        if self.max_frames_per_scene and len(frames) > self.max_frames_per_scene:
            keep = np.linspace(0, len(frames) - 1, self.max_frames_per_scene).round()
            frames = [frames[int(i)] for i in keep]
        origin = 0.0 if self.pixel_origin is None else self.pixel_origin
        items = []
        for fr in frames:
            pose = np.asarray(fr['cam2global'], dtype=np.float64)
            if not np.isfinite(pose).all():
                self._count('non_finite_pose', f"frame {fr['frame_id']} has a non-finite "
                            'camera pose', log=True)
                continue
            world2cam = np.linalg.inv(pose)
            item = dict(base, frame_id=fr['frame_id'],
                        img_path=osp.join(self.data_prefix['img'], fr['img_path']),
                        cam2img=as_mat4(fr['cam2img']), cam2global=pose,
                        lidar2img=_shift_origin(as_mat4(fr['cam2img']), origin) @ world2cam)
            if fr.get('depth_path'):
                item['depth_path'] = osp.join(self.data_prefix['depth'], fr['depth_path'])
                dk = as_mat4(fr.get('depth2img', fr['cam2img']))
                item['lidar2depth'] = _shift_origin(dk, origin) @ world2cam
                if 'depth_shift' in fr:
                    item['depth_shift'] = float(fr['depth_shift'])
            items.append(item)
        return items

    def _sunrgbd_frame(self, cam: dict, base: dict, info: dict) -> dict:
        origin = SUNRGBD_PIXEL_ORIGIN if self.pixel_origin is None else self.pixel_origin
        frame_id = str(info.get('sample_idx', base['scene_id']))
        return dict(base, frame_id=frame_id,
                    img_path=osp.join(self.data_prefix['img'], cam['img_path']),
                    lidar2img=_shift_origin(as_mat4(cam['depth2img']), origin))

    # ------------------------------------------------------------------ fetching
    def __getitem__(self, idx: int) -> dict:
        """The idx-th pair; an unreadable frame is counted and replaced by another."""
        if not self._fully_initialized:
            self.full_init()
        skipped: Counter = Counter()  # carried with the item: workers' counts stay in them
        for _ in range(self.max_refetch + 1):
            try:
                data = self.prepare_data(idx)
            except PairedDataError as err:
                if not self.skip_bad_frames:
                    raise
                self._count(err.reason, f'skipping frame: {err}', log=True)
                skipped[err.reason] += 1
                data = None
            if data is not None:
                return attach_skipped(data, skipped)
            # Test mode stays deterministic: the next frame; training draws a random one.
            idx = (idx + 1) % len(self) if self.test_mode else self._rand_another()
        raise PairedDataError(
            f'no readable frame after {self.max_refetch + 1} tries in {self.ann_file}; skips '
            f'so far: {dict(self.skip_counts)}', self.ann_file, 'no_valid_frame')

    def _count(self, reason: str, message: str, log: bool) -> None:
        self.skip_counts[reason] += 1
        if log:
            print_log(f'{message} [{reason}: {self.skip_counts[reason]} so far]',
                      logger='current', level=logging.WARNING)


def _shift_origin(k: np.ndarray, origin: float) -> np.ndarray:
    """Intrinsics whose pixel coordinates start at `origin` -> ones that start at 0."""
    if not origin:
        return k
    shift = np.eye(4)
    shift[0, 2] = shift[1, 2] = -origin
    return shift @ k
