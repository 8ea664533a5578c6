"""One synthetic ScanNet-like scene in memory: scanned cloud, labels, boxes and RGB-D frames."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from concept_distill.datasets.converters.synthetic.furniture import DETECTION_CLASSES
from concept_distill.datasets.converters.synthetic.rasterizer import rasterize, shade_image
from concept_distill.datasets.converters.synthetic.room import (
    SceneObject,
    camera_poses,
    generate_room,
    intrinsics,
    pick_classes,
)
from concept_distill.datasets.frustum_pairing import visible_points

# Frames that see fewer pixels of scanned surface than this are re-posed (looking at a wall
# from 5 cm is useless for pairing).
_MIN_DEPTH_FILL = 0.6
_MIN_VIEW_DIST = 0.8
# ... and so are frames that see under 2% of the scan (a typical ScanNet frame sees 5-30%).
_MIN_VISIBLE = 0.02


@dataclass
class SyntheticFrame:
    """A rendered posed RGB-D frame."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float metres, 0 = no reading
    cam2world: np.ndarray  # 4x4, in the stored (unaligned) frame
    cam2img: np.ndarray  # 4x4 intrinsics


@dataclass
class SyntheticScene:
    """Everything the writers need for one scene."""

    name: str
    points: np.ndarray  # (N, 6) float32: unaligned xyz, rgb 0-255
    instance: np.ndarray  # (N,) int64, 1-based, 0 = unannotated
    semantic: np.ndarray  # (N,) int64 NYU40 ids
    axis_align_matrix: np.ndarray  # 4x4
    objects: list[SceneObject]
    frames: list[SyntheticFrame]

    def aligned_xyz(self) -> np.ndarray:
        """Points in the axis-aligned frame."""
        a = self.axis_align_matrix
        return self.points[:, :3].astype(np.float64) @ a[:3, :3].T + a[:3, 3]

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned boxes (K, 6) [cx, cy, cz, dx, dy, dz] of detection-class instances in
        the aligned frame (tight around their points, as ScanNet's converter computes them),
        and their labels (K,) in mmdet3d's 18-class order."""
        xyz = self.aligned_xyz()
        boxes, labels = [], []
        for obj in self.objects:
            if obj.name is None:
                continue
            sel = self.instance == obj.instance_id
            if not sel.any():
                continue
            lo, hi = xyz[sel].min(axis=0), xyz[sel].max(axis=0)
            boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]))
            labels.append(DETECTION_CLASSES.index(obj.name))
        return (np.asarray(boxes, dtype=np.float64).reshape(-1, 6),
                np.asarray(labels, dtype=np.int64))


def make_scene(name: str, scene_index: int, rng: np.random.Generator, num_frames: int = 8,
               points_per_scene: int = 40000, image_size: tuple[int, int] = (240, 320),
               identity_alignment: bool = False) -> SyntheticScene:
    """Generate, sample and render one scene deterministically from `rng`."""
    room = generate_room(rng, pick_classes(rng, scene_index), identity_alignment)
    cloud = room.sample_points(points_per_scene, rng)
    # Small scanner noise; labels and boxes follow the noisy points, as in real scans.
    xyz = cloud['xyz'] + rng.normal(0.0, 0.002, cloud['xyz'].shape)
    inv_align = np.linalg.inv(room.axis_align_matrix)
    xyz_unaligned = xyz @ inv_align[:3, :3].T + inv_align[:3, 3]
    points = np.concatenate([xyz_unaligned, cloud['rgb']], axis=1).astype(np.float32)

    height, width = image_size
    k = intrinsics(height, width)
    frames = []
    poses = camera_poses(room, num_frames * 4, rng)  # spare poses for rejected views
    for pose in poses:
        if len(frames) == num_frames:
            break
        world2cam = np.linalg.inv(pose)
        depth, face = rasterize(room.mesh, world2cam, k, height, width)
        scanned = (face >= 0) & room.mesh.sample[np.maximum(face, 0)]
        if scanned.mean() < _MIN_DEPTH_FILL or np.median(depth[face >= 0]) < _MIN_VIEW_DIST:
            continue
        seen, _ = visible_points(xyz, k @ world2cam, (height, width), depth_map=depth)
        if len(seen) < _MIN_VISIBLE * len(xyz):
            continue
        rgb = shade_image(room.mesh, depth, face, pose, k)
        frames.append(SyntheticFrame(rgb, depth, inv_align @ pose, k))
    return SyntheticScene(name, points, cloud['instance'].astype(np.int64),
                          cloud['semantic'].astype(np.int64), room.axis_align_matrix,
                          room.objects, frames)
