"""Random furnished rooms: layout, scanned point cloud, labels and camera poses."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from concept_distill.datasets.converters.synthetic.furniture import (
    CEILING_NYU40,
    CLASSES,
    FLOOR,
    FLOOR_NYU40,
    WALL,
    WALL_NYU40,
    FurnitureClass,
    build_furniture,
)
from concept_distill.datasets.converters.synthetic.mesh import (
    TriMesh,
    quad,
    sample_surface,
    surface_color,
)

WALL_HEIGHT = 2.5
# Furniture is scanned more densely than walls and floor (per square metre), as in ScanNet
# meshes where objects carry more geometric detail; it also makes small objects learnable.
FURNITURE_DENSITY = 3.0
_ROT90 = [np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
          for a in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2)]


@dataclass
class SceneObject:
    """One labelled object of a room (furniture, wall or floor)."""

    instance_id: int
    nyu40: int
    raw_category: str
    name: str | None  # detection class name, None for structure


@dataclass
class SyntheticRoom:
    """A room in its axis-aligned frame plus the alignment back to the 'scanner' frame."""

    mesh: TriMesh  # everything that is rendered (aligned frame)
    objects: list[SceneObject]
    size: tuple[float, float]
    axis_align_matrix: np.ndarray  # 4x4: unaligned (stored) frame -> aligned frame
    footprints: list[tuple[float, float, float, float]] = field(default_factory=list)

    def sample_points(self, num_points: int, rng: np.random.Generator) -> dict:
        """Scanned point cloud: aligned xyz, colour 0-255, instance and NYU40 semantic ids."""
        density = np.where(self.mesh.semantic >= 3, FURNITURE_DENSITY, 1.0)
        density = np.where(self.mesh.semantic == CEILING_NYU40, 0.0, density)
        xyz, face = sample_surface(self.mesh, num_points, rng, density)
        rgb = surface_color(self.mesh, face, xyz) * 255.0
        return dict(xyz=xyz, rgb=rgb, instance=self.mesh.instance[face],
                    semantic=self.mesh.semantic[face])


def _structure(w: float, d: float) -> list[TriMesh]:
    hw, hd, h = w / 2, d / 2, WALL_HEIGHT
    floor = quad([(-hw, -hd, 0), (hw, -hd, 0), (hw, hd, 0), (-hw, hd, 0)],
                 (0.62, 0.55, 0.45), tex_amp=0.18, tex_freq=2 * np.pi / 0.6)
    ceiling = quad([(-hw, -hd, h), (-hw, hd, h), (hw, hd, h), (hw, -hd, h)],
                   (0.93, 0.93, 0.9), tex_amp=0.0)
    ceiling.sample[:] = False  # rendered, but ScanNet reconstructions rarely hold ceilings
    wall_c = (0.86, 0.84, 0.78)
    walls = [  # inward-facing quads: south, east, north, west
        quad([(-hw, -hd, 0), (-hw, -hd, h), (hw, -hd, h), (hw, -hd, 0)], wall_c, 0.05, 3.0),
        quad([(hw, -hd, 0), (hw, -hd, h), (hw, hd, h), (hw, hd, 0)], wall_c, 0.05, 3.0),
        quad([(hw, hd, 0), (hw, hd, h), (-hw, hd, h), (-hw, hd, 0)], wall_c, 0.05, 3.0),
        quad([(-hw, hd, 0), (-hw, hd, h), (-hw, -hd, h), (-hw, -hd, 0)], wall_c, 0.05, 3.0),
    ]
    return [floor, ceiling, *walls]


def _wall_pose(wall: int, offset: float, w: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    # Local +y (the object's back) must point into wall `wall` (0 south, 1 east, 2 north, 3 west).
    hw, hd = w / 2, d / 2
    rot = _ROT90[(wall + 2) % 4]  # rotation taking +y to the wall's outward direction
    anchor = [np.array([offset, -hd, 0]), np.array([hw, offset, 0]),
              np.array([offset, hd, 0]), np.array([-hw, offset, 0])][wall]
    return rot, anchor


def _overlap(a, b, gap: float) -> bool:
    return not (a[1] + gap <= b[0] or b[1] + gap <= a[0] or a[3] + gap <= b[2]
                or b[3] + gap <= a[2])


def generate_room(rng: np.random.Generator, classes: list[FurnitureClass],
                  identity_alignment: bool = False) -> SyntheticRoom:
    """A room of random size with `classes` placed on the floor and walls, no overlaps."""
    w, d = rng.uniform(4.0, 6.5), rng.uniform(4.0, 6.5)
    meshes = _structure(w, d)
    objects = []
    inst = 0
    for k, m in enumerate(meshes):
        if k == 1:  # ceiling: rendered, unlabelled in the cloud (never sampled)
            meshes[k] = m.labelled(0, CEILING_NYU40)
            continue
        inst += 1
        nyu = FLOOR_NYU40 if k == 0 else WALL_NYU40
        meshes[k] = m.labelled(inst, nyu)
        objects.append(SceneObject(inst, nyu, 'floor' if k == 0 else 'wall', None))

    wall_spans: list[list[tuple[float, float]]] = [[], [], [], []]
    footprints: list[tuple[float, float, float, float]] = []
    # (footprint reaching into the room, lowest z) of wall objects: tall floor objects keep
    # clear of them so nothing hides a picture, window or door.
    wall_zones: list[tuple[tuple[float, float, float, float], float]] = []
    # Wall objects first, then floor objects, big ones first so small ones fill the gaps.
    order = sorted(classes, key=lambda c: (c.place != WALL, -np.prod(c.size_hi[:2])))
    for cls in order:
        mesh, size = build_furniture(cls, rng)
        placed = _place(cls, mesh, size, w, d, rng, wall_spans, footprints, wall_zones)
        if placed is None:
            continue  # the room is full; the object is dropped
        inst += 1
        meshes.append(mesh.transformed(*placed).labelled(inst, cls.nyu40))
        objects.append(SceneObject(inst, cls.nyu40, cls.raw_category, cls.name))

    align = np.eye(4)
    if not identity_alignment:
        # The stored ('scanner') frame is the aligned frame moved by a random yaw and offset;
        # axis_align_matrix maps it back, exactly as ScanNet's axisAlignment does.
        yaw = rng.uniform(-np.pi, np.pi)
        c, s = np.cos(yaw), np.sin(yaw)
        align[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        align[:3, 3] = [rng.uniform(-4, -2), rng.uniform(-4, -2), rng.uniform(-0.1, 0.1)]
    return SyntheticRoom(TriMesh.concat(meshes), objects, (w, d), align, footprints)


def _place(cls: FurnitureClass, mesh: TriMesh, size: np.ndarray, w: float, d: float,
           rng: np.random.Generator, wall_spans: list, footprints: list,
           wall_zones: list) -> tuple[np.ndarray, np.ndarray] | None:
    """(rotation, translation) of a free spot for one object, or None; updates the books."""
    verts = mesh.tris.reshape(-1, 3)
    height = verts[:, 2].max()
    for _ in range(60):
        if cls.against_wall:
            wall = int(rng.integers(4))
            length = w if wall in (0, 2) else d
            half = size[0] / 2
            if length < size[0] + 0.4:
                continue
            offset = rng.uniform(-length / 2 + half + 0.1, length / 2 - half - 0.1)
            span = (offset - half, offset + half)
            if cls.place == WALL and any(s[0] < span[1] + 0.15 and span[0] < s[1] + 0.15
                                         for s in wall_spans[wall]):
                continue
            rot, anchor = _wall_pose(wall, offset, w, d)
            trans = anchor - rot @ np.array([0.0, size[1] / 2, 0.0])
        else:
            rot = _ROT90[int(rng.integers(4))]
            half_xy = np.abs(rot[:2, :2]) @ size[:2] / 2
            trans = np.array([rng.uniform(-w / 2 + half_xy[0] + 0.4, w / 2 - half_xy[0] - 0.4),
                              rng.uniform(-d / 2 + half_xy[1] + 0.4, d / 2 - half_xy[1] - 0.4),
                              0.0])
        moved = verts @ rot.T + trans
        fp = (moved[:, 0].min(), moved[:, 0].max(), moved[:, 1].min(), moved[:, 1].max())
        if fp[0] < -w / 2 - 1e-6 or fp[1] > w / 2 + 1e-6 or fp[2] < -d / 2 - 1e-6 \
                or fp[3] > d / 2 + 1e-6:
            continue
        if cls.place == WALL:
            # Reach into the room: doors need room to open, the others need to stay visible.
            reach = 0.8 if cls.name == 'door' else 0.35
            zone = (fp[0] - 0.1, fp[1] + 0.1, fp[2] - reach, fp[3] + reach)
            zone = (max(zone[0], -w / 2), min(zone[1], w / 2), max(zone[2], -d / 2),
                    min(zone[3], d / 2))
            if any(_overlap(zone, o, 0.0) for o in footprints):
                continue
            wall_spans[wall].append(span)
            wall_zones.append((zone, moved[:, 2].min()))
            return rot, trans
        if any(_overlap(fp, o, 0.15) for o in footprints):
            continue
        if any(_overlap(fp, z, 0.0) and height > zmin - 0.05 for z, zmin in wall_zones):
            continue
        footprints.append(fp)
        return rot, trans
    return None


def camera_poses(room: SyntheticRoom, num_frames: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Camera-to-aligned-world 4x4 poses (x right, y down, z forward) inside free floor."""
    w, d = room.size
    poses = []
    for k in range(num_frames):
        for _ in range(200):
            pos = np.array([rng.uniform(-w / 2 + 0.5, w / 2 - 0.5),
                            rng.uniform(-d / 2 + 0.5, d / 2 - 0.5), rng.uniform(1.25, 1.7)])
            if not any(fp[0] - 0.3 < pos[0] < fp[1] + 0.3 and fp[2] - 0.3 < pos[1] < fp[3] + 0.3
                       for fp in room.footprints):
                break
        # Look roughly across the room (spread over the frames) and down at the furniture.
        yaw = 2 * np.pi * (k + rng.uniform(-0.3, 0.3)) / max(num_frames, 1)
        target = pos + np.array([np.cos(yaw), np.sin(yaw), 0.0]) * 2.0
        target[2] = rng.uniform(0.3, 0.9)
        fwd = target - pos
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, down, fwd], axis=1)
        pose[:3, 3] = pos
        poses.append(pose)
    return poses


def intrinsics(height: int, width: int, hfov_deg: float = 60.0) -> np.ndarray:
    """4x4 pinhole intrinsics with square pixels and a centred principal point."""
    f = (width / 2) / np.tan(np.deg2rad(hfov_deg) / 2)
    k = np.eye(4)
    k[0, 0] = k[1, 1] = f
    k[0, 2], k[1, 2] = (width - 1) / 2, (height - 1) / 2
    return k


def pick_classes(rng: np.random.Generator, scene_index: int) -> list[FurnitureClass]:
    """A varied furniture set: rotating over all 18 classes across scenes, plus extra chairs."""
    floor = [c for c in CLASSES if c.place == FLOOR]
    wall = [c for c in CLASSES if c.place == WALL]
    start = (scene_index * 5) % len(floor)
    k = int(rng.integers(6, 9))
    chosen = [floor[(start + i) % len(floor)] for i in range(k)]
    chair = next(c for c in floor if c.name == 'chair')
    chosen += [chair] * int(rng.integers(1, 3))
    chosen += [c for c in wall if c.name == 'door' or rng.random() < 0.7]
    return chosen
