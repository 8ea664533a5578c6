"""ScanNet's 18 detection classes as class-specific shapes and colours.

Every builder makes an object in a local frame: footprint centred on the origin, resting on
z = 0 (or, for wall objects, with its back against the plane y = +d/2), back towards +y.
Shapes and colours differ per class so the scenes are learnable; sizes and a small colour
jitter vary per instance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from concept_distill.datasets.converters.synthetic.mesh import TriMesh, box, cylinder

FLOOR, WALL = 'floor', 'wall'


@dataclass(frozen=True)
class FurnitureClass:
    """One detection class: names, NYU40 id, where it goes, size range and builder."""

    name: str  # mmdet3d's class name
    raw_category: str  # ScanNet's raw label (aggregation.json / labels tsv)
    nyu40: int
    place: str  # FLOOR or WALL
    size_lo: tuple[float, float, float]  # (w, d, h) metres
    size_hi: tuple[float, float, float]
    against_wall: bool
    build: Callable[[np.ndarray, np.ndarray, np.random.Generator], TriMesh]


def _jitter(color, rng: np.random.Generator, amount: float = 0.05) -> np.ndarray:
    return np.clip(np.asarray(color) + rng.uniform(-amount, amount, 3), 0.0, 1.0)


def _legs(w: float, d: float, h: float, t: float, color) -> list[TriMesh]:
    xs, ys = (-w / 2 + t, w / 2 - t), (-d / 2 + t, d / 2 - t)
    return [box((x - t / 2, y - t / 2, 0), (x + t / 2, y + t / 2, h), color, skip=('-z',))
            for x in xs for y in ys]


def build_cabinet(s, c, rng):
    w, d, h = s
    body = box((-w / 2, -d / 2, 0), (w / 2, d / 2, h), c, skip=('-z', '+y'))
    split = box((-0.01, -d / 2 - 0.005, 0.05), (0.01, -d / 2, h - 0.05), c * 0.6)
    handles = [box((x - 0.01, -d / 2 - 0.03, h * 0.55), (x + 0.01, -d / 2, h * 0.75),
                   (0.75, 0.75, 0.78)) for x in (-0.06, 0.06)]
    return TriMesh.concat([body, split, *handles])


def build_bed(s, c, rng):
    w, d, h = s
    frame = box((-w / 2, -d / 2, 0), (w / 2, d / 2 - 0.08, 0.3), c, skip=('-z',))
    mattress = box((-w / 2 + 0.04, -d / 2 + 0.04, 0.3), (w / 2 - 0.04, d / 2 - 0.1, 0.5),
                   (0.92, 0.92, 0.88), tex_amp=0.03)
    pillow = box((-w / 2 + 0.12, d / 2 - 0.55, 0.5), (w / 2 - 0.12, d / 2 - 0.15, 0.6),
                 (0.6, 0.75, 0.95), tex_amp=0.03)
    head = box((-w / 2, d / 2 - 0.08, 0), (w / 2, d / 2, h), c, skip=('-z', '+y'))
    return TriMesh.concat([frame, mattress, pillow, head])


def build_chair(s, c, rng):
    w, d, h = s
    seat = box((-w / 2, -d / 2, 0.42), (w / 2, d / 2, 0.48), c)
    back = box((-w / 2, d / 2 - 0.06, 0.48), (w / 2, d / 2, h), c)
    return TriMesh.concat([seat, back, *_legs(w, d, 0.42, 0.04, (0.15, 0.15, 0.15))])


def build_sofa(s, c, rng):
    w, d, h = s
    base = box((-w / 2, -d / 2, 0), (w / 2, d / 2, 0.42), c, skip=('-z',))
    back = box((-w / 2, d / 2 - 0.22, 0.42), (w / 2, d / 2, h), c, skip=('+y',))
    arms = [box((x0, -d / 2, 0.42), (x0 + 0.18, d / 2 - 0.22, 0.62), c * 0.9)
            for x0 in (-w / 2, w / 2 - 0.18)]
    cushion = box((-w / 2 + 0.2, -d / 2 + 0.04, 0.42), (w / 2 - 0.2, d / 2 - 0.24, 0.5),
                  np.clip(c * 1.25, 0, 1))
    return TriMesh.concat([base, back, *arms, cushion])


def build_table(s, c, rng):
    w, d, h = s
    top = box((-w / 2, -d / 2, h - 0.05), (w / 2, d / 2, h), c, tex_freq=20.0, tex_amp=0.12)
    return TriMesh.concat([top, *_legs(w, d, h - 0.05, 0.06, c * 0.7)])


def build_door(s, c, rng):
    w, d, h = s
    slab = box((-w / 2, -d / 2, 0), (w / 2, d / 2, h), c, skip=('-z', '+y'), tex_freq=14.0)
    knob = box((w / 2 - 0.12, -d / 2 - 0.06, 0.95), (w / 2 - 0.06, -d / 2, 1.02),
               (0.85, 0.75, 0.3))
    return TriMesh.concat([slab, knob])


def build_window(s, c, rng):
    w, d, h = s
    z0 = 0.9
    glass = box((-w / 2 + 0.06, -d / 2 + 0.01, z0 + 0.06), (w / 2 - 0.06, d / 2, z0 + h - 0.06),
                c, skip=('+y',), tex_amp=0.02)
    frame_c = (0.95, 0.95, 0.95)
    bars = [box((-w / 2, -d / 2, z0), (w / 2, d / 2, z0 + 0.06), frame_c, skip=('+y',)),
            box((-w / 2, -d / 2, z0 + h - 0.06), (w / 2, d / 2, z0 + h), frame_c, skip=('+y',)),
            box((-w / 2, -d / 2, z0), (-w / 2 + 0.06, d / 2, z0 + h), frame_c, skip=('+y',)),
            box((w / 2 - 0.06, -d / 2, z0), (w / 2, d / 2, z0 + h), frame_c, skip=('+y',)),
            box((-0.03, -d / 2, z0), (0.03, d / 2, z0 + h), frame_c, skip=('+y',))]
    return TriMesh.concat([glass, *bars])


def build_bookshelf(s, c, rng):
    w, d, h = s
    t = 0.03
    parts = [box((-w / 2, -d / 2, 0), (-w / 2 + t, d / 2, h), c, skip=('-z',)),
             box((w / 2 - t, -d / 2, 0), (w / 2, d / 2, h), c, skip=('-z',)),
             box((-w / 2, d / 2 - t, 0), (w / 2, d / 2, h), c, skip=('-z', '+y')),
             box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), c)]
    n_shelf = 4
    for k in range(n_shelf):
        z = k * (h - t) / n_shelf
        parts.append(box((-w / 2 + t, -d / 2, z), (w / 2 - t, d / 2 - t, z + t), c))
        # A row of books in bright colours on each shelf.
        x = -w / 2 + t + 0.01
        while x < w / 2 - t - 0.06:
            bw = rng.uniform(0.025, 0.06)
            bh = rng.uniform(0.6, 0.9) * ((h - t) / n_shelf - t)
            book_c = rng.choice([(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.9, 0.8, 0.1),
                                 (0.1, 0.6, 0.2), (0.95, 0.95, 0.9)])
            parts.append(box((x, -d / 2 + 0.04, z + t), (x + bw, d / 2 - t, z + t + bh), book_c,
                             tex_amp=0.0))
            x += bw + 0.004
    return TriMesh.concat(parts)


def build_picture(s, c, rng):
    w, d, h = s
    z0 = 1.2
    frame = box((-w / 2, -d / 2 + 0.005, z0), (w / 2, d / 2, z0 + h), (0.1, 0.08, 0.05),
                skip=('+y',))
    canvas = box((-w / 2 + 0.04, -d / 2, z0 + 0.04), (w / 2 - 0.04, d / 2, z0 + h - 0.04), c,
                 skip=('+y',), tex_amp=0.5, tex_freq=25.0)
    return TriMesh.concat([frame, canvas])


def build_counter(s, c, rng):
    w, d, h = s
    body = box((-w / 2, -d / 2 + 0.03, 0), (w / 2, d / 2, h - 0.04), c, skip=('-z', '+y'))
    top = box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), (0.22, 0.22, 0.25), skip=('+y',),
              tex_amp=0.15, tex_freq=30.0)
    return TriMesh.concat([body, top])


def build_desk(s, c, rng):
    w, d, h = s
    top = box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), c)
    sides = [box((x0, -d / 2 + 0.02, 0), (x0 + 0.04, d / 2, h - 0.04), c * 0.8, skip=('-z',))
             for x0 in (-w / 2, w / 2 - 0.04)]
    modesty = box((-w / 2 + 0.04, d / 2 - 0.03, 0.3), (w / 2 - 0.04, d / 2, h - 0.04), c * 0.8)
    return TriMesh.concat([top, *sides, modesty])


def _folds(w: float, d: float, z0: float, z1: float, c, n: int) -> list[TriMesh]:
    # Alternating deep and shallow vertical strips read as the folds of a curtain.
    edges = np.linspace(-w / 2, w / 2, n + 1)
    return [box((edges[k], -d / 2 if k % 2 else -d / 4, z0), (edges[k + 1], d / 2, z1),
                c * (0.85 if k % 2 else 1.0), skip=('+y',), tex_amp=0.04)
            for k in range(n)]


def build_curtain(s, c, rng):
    w, d, h = s
    return TriMesh.concat(_folds(w, d, 2.45 - h, 2.45, c, 9))


def build_refrigerator(s, c, rng):
    w, d, h = s
    body = box((-w / 2, -d / 2, 0), (w / 2, d / 2, h), c, skip=('-z', '+y'), tex_amp=0.02)
    gap = box((-w / 2, -d / 2 - 0.005, h * 0.62), (w / 2, -d / 2, h * 0.64), (0.2, 0.2, 0.2))
    handle = box((w / 2 - 0.1, -d / 2 - 0.05, h * 0.3), (w / 2 - 0.07, -d / 2, h * 0.9),
                 (0.3, 0.3, 0.32))
    return TriMesh.concat([body, gap, handle])


def build_showercurtain(s, c, rng):
    w, d, h = s
    rod = box((-w / 2, -0.015, h - 0.03), (w / 2, 0.015, h), (0.7, 0.7, 0.72))
    return TriMesh.concat([*_folds(w, d, 0.15, h - 0.03, c, 7), rod])


def build_toilet(s, c, rng):
    w, d, h = s
    bowl = cylinder(0.0, -d / 2 + w / 2, 0.0, 0.42, w / 2, c, tex_amp=0.02)
    tank = box((-w / 2, d / 2 - 0.2, 0.0), (w / 2, d / 2, h), c, skip=('-z', '+y'),
               tex_amp=0.02)
    seat = box((-w / 2 + 0.02, -d / 2 + 0.02, 0.42), (w / 2 - 0.02, d / 2 - 0.2, 0.45),
               (0.85, 0.85, 0.9))
    return TriMesh.concat([bowl, tank, seat])


def build_sink(s, c, rng):
    w, d, h = s
    pedestal = cylinder(0.0, 0.0, 0.0, h - 0.15, 0.08, c, tex_amp=0.02)
    basin = box((-w / 2, -d / 2, h - 0.15), (w / 2, d / 2, h), c, skip=('+y',), tex_amp=0.02)
    faucet = box((-0.02, d / 2 - 0.08, h), (0.02, d / 2 - 0.02, h + 0.12), (0.6, 0.6, 0.65))
    return TriMesh.concat([pedestal, basin, faucet])


def build_bathtub(s, c, rng):
    w, d, h = s
    t = 0.08
    inner = np.clip(c * 0.85, 0, 1)
    walls = [box((-w / 2, -d / 2, 0), (w / 2, -d / 2 + t, h), c, skip=('-z',)),
             box((-w / 2, d / 2 - t, 0), (w / 2, d / 2, h), c, skip=('-z', '+y')),
             box((-w / 2, -d / 2 + t, 0), (-w / 2 + t, d / 2 - t, h), c, skip=('-z',)),
             box((w / 2 - t, -d / 2 + t, 0), (w / 2, d / 2 - t, h), c, skip=('-z',)),
             box((-w / 2 + t, -d / 2 + t, 0), (w / 2 - t, d / 2 - t, 0.1), inner,
                 skip=('-z',))]
    return TriMesh.concat(walls)


def build_garbagebin(s, c, rng):
    w, d, h = s
    body = cylinder(0.0, 0.0, 0.0, h - 0.03, w / 2, c, tex_amp=0.03)
    rim = cylinder(0.0, 0.0, h - 0.03, h, w / 2 + 0.01, (0.1, 0.1, 0.1))
    return TriMesh.concat([body, rim])


# (name, raw category, NYU40 id, place, size lo, size hi, against wall, builder, colour)
_TABLE = [
    ('cabinet', 'cabinet', 3, FLOOR, (0.6, 0.4, 0.8), (1.0, 0.6, 1.2), True, build_cabinet,
     (0.55, 0.35, 0.2)),
    ('bed', 'bed', 4, FLOOR, (1.0, 1.9, 0.8), (1.6, 2.1, 1.1), True, build_bed,
     (0.35, 0.2, 0.12)),
    ('chair', 'chair', 5, FLOOR, (0.42, 0.42, 0.8), (0.5, 0.5, 1.0), False, build_chair,
     (0.8, 0.15, 0.15)),
    ('sofa', 'sofa', 6, FLOOR, (1.5, 0.8, 0.75), (2.1, 0.95, 0.9), True, build_sofa,
     (0.2, 0.3, 0.65)),
    ('table', 'table', 7, FLOOR, (0.8, 0.6, 0.7), (1.4, 0.9, 0.78), False, build_table,
     (0.8, 0.62, 0.4)),
    ('door', 'door', 8, WALL, (0.8, 0.05, 2.0), (0.95, 0.06, 2.1), True, build_door,
     (0.45, 0.28, 0.15)),
    ('window', 'window', 9, WALL, (0.8, 0.06, 0.9), (1.5, 0.08, 1.2), True, build_window,
     (0.6, 0.8, 0.95)),
    ('bookshelf', 'bookshelf', 10, FLOOR, (0.8, 0.3, 1.6), (1.2, 0.4, 2.0), True,
     build_bookshelf, (0.3, 0.18, 0.1)),
    ('picture', 'picture', 11, WALL, (0.4, 0.03, 0.35), (1.0, 0.04, 0.7), True, build_picture,
     (0.95, 0.7, 0.2)),
    ('counter', 'counter', 12, FLOOR, (1.5, 0.6, 0.88), (2.4, 0.7, 0.95), True, build_counter,
     (0.85, 0.85, 0.8)),
    ('desk', 'desk', 14, FLOOR, (1.0, 0.55, 0.72), (1.5, 0.75, 0.78), True, build_desk,
     (0.85, 0.78, 0.6)),
    ('curtain', 'curtain', 16, WALL, (1.0, 0.12, 2.0), (1.8, 0.16, 2.3), True, build_curtain,
     (0.5, 0.28, 0.6)),
    ('refrigerator', 'refrigerator', 24, FLOOR, (0.65, 0.65, 1.7), (0.8, 0.75, 1.9), True,
     build_refrigerator, (0.82, 0.84, 0.88)),
    ('showercurtrain', 'shower curtain', 28, FLOOR, (1.1, 0.1, 1.8), (1.6, 0.14, 2.0), False,
     build_showercurtain, (0.95, 0.72, 0.8)),
    ('toilet', 'toilet', 33, FLOOR, (0.38, 0.65, 0.75), (0.45, 0.72, 0.82), True,
     build_toilet, (0.97, 0.97, 0.97)),
    ('sink', 'sink', 34, FLOOR, (0.5, 0.4, 0.85), (0.65, 0.5, 0.92), True, build_sink,
     (0.7, 0.8, 0.88)),
    ('bathtub', 'bathtub', 36, FLOOR, (1.5, 0.7, 0.5), (1.7, 0.8, 0.6), True, build_bathtub,
     (0.93, 0.9, 0.78)),
    ('garbagebin', 'trash can', 39, FLOOR, (0.28, 0.28, 0.35), (0.4, 0.4, 0.6), False,
     build_garbagebin, (0.2, 0.5, 0.25)),
]

BASE_COLORS = {row[0]: np.asarray(row[8]) for row in _TABLE}
CLASSES: tuple[FurnitureClass, ...] = tuple(
    FurnitureClass(name, raw, nyu, place, lo, hi, wall, fn)
    for name, raw, nyu, place, lo, hi, wall, fn, _ in _TABLE)
CLASS_BY_NAME = {c.name: c for c in CLASSES}
DETECTION_CLASSES = tuple(c.name for c in CLASSES)  # mmdet3d ScanNetDataset order

# Structural classes (not detected, but labelled as ScanNet labels them).
WALL_NYU40, FLOOR_NYU40, CEILING_NYU40 = 1, 2, 22


def build_furniture(cls: FurnitureClass, rng: np.random.Generator) -> tuple[TriMesh, np.ndarray]:
    """An instance of `cls` in its local frame: (mesh, size (w, d, h))."""
    size = rng.uniform(cls.size_lo, cls.size_hi)
    color = _jitter(BASE_COLORS[cls.name], rng)
    return cls.build(size, color, rng), size
