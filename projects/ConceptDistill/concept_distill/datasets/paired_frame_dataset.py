"""A dataset of (image, points seen by that image) pairs over ScanNet- or SUN RGB-D-format infos."""
from __future__ import annotations

import logging
import math
import os.path as osp
import zlib
from collections import Counter

import numpy as np
import torch
from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from concept_distill.datasets.frustum_pairing import PairedDataError, as_mat4
from concept_distill.datasets.paired_collate import paired_collate  # noqa: F401 (registers)
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
    replaced when `skip_bad_frames`: in training by a random frame; in test mode by the
    nearest frame of the same scene that the pass does not already hold (the stride leaves
    some out), else the item is None (dropped: `paired_collate` leaves it out of the batch),
    so a gallery never holds a pair twice. All are counted in `skip_counts` and logged with
    the file's name.

    Epochs: `frame_stride` keeps every n-th frame of each scene starting at an offset drawn
    per scene and per epoch (`set_epoch`, called by `FrameEpochHook`; seeded by
    `offset_seed`, so a run is reproducible), so every frame is used over the epochs while an
    epoch has the same length; in test mode the offset is 0. The epoch lives in shared
    memory: persistent dataloader workers see it change. In test mode each sample's pipeline
    runs under a numpy random state seeded by its frame id, so two validation passes draw
    the same points (`save_best` compares the same gallery).

    Args:
        data_root: dataset root.
        ann_file: info file (relative to data_root).
        data_prefix: folders of points (`pts`), images (`img`) and depth maps (`depth`,
            defaults to `img`) relative to data_root.
        frame_stride: keep every n-th frame of each scene (from a per-epoch offset).
        max_frames_per_scene: cap on frames per scene after the stride (evenly spaced).
        offset_seed: seed of the per-epoch frame offsets and of the test-mode sampling.
        skip_bad_frames: replace unreadable frames (False: raise the error).
        pixel_origin: pixel coordinate of the first pixel's centre in the infos'
            intrinsics; None = 0 for ScanNet frames, 1 for SUN RGB-D (MATLAB) entries.
    """

    METAINFO = dict(dataset='paired_frames')

    def __init__(self, data_root: str, ann_file: str,
                 data_prefix: dict | None = None, frame_stride: int = 1,
                 max_frames_per_scene: int | None = None, skip_bad_frames: bool = True,
                 pixel_origin: float | None = None, max_refetch: int = 100,
                 offset_seed: int = 0, **kwargs) -> None:
        prefix = dict(pts='points', img='', depth=None)
        prefix.update(data_prefix or {})
        if prefix['depth'] is None:
            prefix['depth'] = prefix['img']
        self.frame_stride = max(int(frame_stride), 1)
        self.max_frames_per_scene = max_frames_per_scene
        self.skip_bad_frames = skip_bad_frames
        self.pixel_origin = pixel_origin
        self.offset_seed = int(offset_seed)
        self.skip_counts: Counter = Counter()
        # Shared memory: set_epoch in the main process reaches forked/persistent workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._selection: tuple[int, np.ndarray] | None = None
        self._group_of: np.ndarray | None = None
        self._num_groups = 0
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
        # Frames of one entry form a group: the stride and its offset apply within it.
        base['_group'] = self._num_groups
        self._num_groups += 1
        if 'frames' in info:
            return self._scannet_frames(info['frames'], base)
        cam = (info.get('images') or {}).get('CAM0')
        if cam is not None and 'depth2img' in cam:
            return [self._sunrgbd_frame(cam, base, info)]
        raise KeyError(f'info of {lidar_path} has neither `frames` (ScanNet) nor '
                       f'`images.CAM0.depth2img` (SUN RGB-D): re-create the infos with '
                       f'tools/create_data.py')

    def _scannet_frames(self, frames: list[dict], base: dict) -> list[dict]:
        # Every frame is kept here; the stride selects among them per epoch.
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

    def load_data_list(self) -> list[dict]:
        """Every frame of every entry (the stride selects per epoch)."""
        self._num_groups = 0
        return super().load_data_list()

    def full_init(self) -> None:
        """Load the infos, then record each frame's group before mmengine serialises them."""
        if self._fully_initialized:
            return
        serialize, self.serialize_data = self.serialize_data, False
        try:
            super().full_init()  # load, filter, subset (no serialisation yet)
        finally:
            self.serialize_data = serialize
        self._group_of = np.array([d.pop('_group') for d in self.data_list], dtype=np.int64)
        if serialize:
            self.data_bytes, self.data_address = self._serialize_data()

    # ------------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """Select the frames of `epoch` (its per-scene offsets; test mode: always offset 0)."""
        self._epoch[0] = int(epoch)

    def _epoch_positions(self) -> np.ndarray:
        """Positions (in the list of all frames) of this epoch's items."""
        if not self._fully_initialized:
            self.full_init()
        epoch = 0 if self.test_mode else int(self._epoch[0])
        if self._selection is None or self._selection[0] != epoch:
            self._selection = (epoch, frame_selection(
                self._group_of, self.frame_stride, self.max_frames_per_scene,
                None if self.test_mode else np.random.default_rng([self.offset_seed, epoch])))
        return self._selection[1]

    def __len__(self) -> int:
        return len(self._epoch_positions())

    @property
    def num_frames(self) -> int:
        """Frames of all epochs (the length of the list `get_frame_info` reads)."""
        return super().__len__()

    def get_frame_info(self, position: int) -> dict:
        """Info of a frame by its position among all frames, whatever the epoch."""
        return super().get_data_info(position)

    def get_data_info(self, idx: int) -> dict:
        """Info of this epoch's idx-th item."""
        return super().get_data_info(int(self._epoch_positions()[idx]))

    # ------------------------------------------------------------------ fetching
    def _prepare(self, position: int) -> dict | None:
        """The pipeline on a frame; in test mode under a random state seeded by its frame id."""
        info = self.get_frame_info(position)
        if not self.test_mode:
            return self.pipeline(info)
        state = np.random.get_state()
        np.random.seed(zlib.crc32(f'{self.offset_seed}:{info["frame_id"]}'.encode()))
        try:
            return self.pipeline(info)
        finally:
            np.random.set_state(state)

    def _outside_gallery(self, position: int) -> list[int]:
        """Frames of `position`'s scene that this pass does not hold, nearest first."""
        group = np.flatnonzero(self._group_of == self._group_of[position])
        unused = np.setdiff1d(group, self._epoch_positions(), assume_unique=True)
        return unused[np.argsort(np.abs(unused - position), kind='stable')].tolist()

    def __getitem__(self, idx: int) -> dict | None:
        """The idx-th pair; an unreadable frame is counted and replaced (or, in test mode
        when its scene has no frame outside the pass, dropped: None)."""
        position = int(self._epoch_positions()[idx])
        skipped: Counter = Counter()  # carried with the item: workers' counts stay in them
        spare: list[int] | None = None
        for _ in range(self.max_refetch + 1):
            try:
                data = self._prepare(position)
            except PairedDataError as err:
                if not self.skip_bad_frames:
                    raise
                self._count(err.reason, f'skipping frame: {err}', log=True)
                skipped[err.reason] += 1
                data = None
            if data is not None:
                return attach_skipped(data, skipped)
            if not self.test_mode:
                position = int(self._epoch_positions()[self._rand_another()])
                continue
            # Test mode: never a frame the pass already holds (a duplicate pair).
            spare = self._outside_gallery(position) if spare is None else spare
            if not spare:
                self._count('dropped_from_gallery', 'test mode: no frame of the scene outside '
                            'the pass can replace it; the item is left out', log=True)
                return None
            position = spare.pop(0)
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


def frame_selection(group_of: np.ndarray, stride: int, max_per_group: int | None,
                    rng: np.random.Generator | None) -> np.ndarray:
    """Positions of one epoch's frames: in each group (scene) of n frames, the
    ceil(n / stride) frames offset + j * stride (mod n), offset drawn by `rng` in
    [0, min(stride, n)) or 0 without one; then at most `max_per_group`, evenly spaced.

    The count per group does not depend on the offset, so every epoch has the same length
    (samplers size themselves once), and over the offsets every frame is drawn.
    """
    order = np.argsort(group_of, kind='stable')
    starts = np.flatnonzero(np.r_[True, group_of[order][1:] != group_of[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    picks = []
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        n = hi - lo
        offset = int(rng.integers(min(stride, n))) if rng is not None else 0
        local = (offset + stride * np.arange(math.ceil(n / stride))) % n
        if max_per_group and len(local) > max_per_group:
            local = local[np.linspace(0, len(local) - 1, max_per_group).round().astype(int)]
        picks.append(order[lo + np.sort(local)])
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
