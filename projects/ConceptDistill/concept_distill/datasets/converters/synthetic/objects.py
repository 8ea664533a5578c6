"""Single synthetic objects: the scene generator's 18 furniture classes, one object at a time.

Each object is built by the room generator's own builders (``furniture.py``), so it has the
same shape, colours and texture as in the scenes; here it is kept whole (every face is
sampled, also those that touch the floor or a wall in a room), moved to the object
convention of ShapeNet / ModelNet (y up, front towards +z, centred on its bounding box and
scaled into the unit sphere) and labelled per point with the **part** it comes from.

Points are sampled on the exposed surface only: where a primitive touches or enters another
(a seat's underside on the legs, a cushion on the sofa's base) the contact faces are hidden,
and points there would carry two labels at one place.

Parts are the primitives a builder concatenates, in the builder's order: ``PART_LAYOUTS``
gives, per class, the part names and how many triangles each spans (a box has 12, a
14-segment cylinder with its cap 42). A builder that changes shape breaks that count, and
``part_labels_of_faces`` says so instead of mislabelling.

Views: a pinhole camera on a sphere around the object looks at its centre; the image is
rendered with the scene rasteriser and coloured with the same colour function as the points,
so a visible point projected with ``cam2img @ world2cam`` (world = the object frame the
points are stored in) lands on a pixel of its own colour.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from concept_distill.datasets.converters.synthetic.furniture import (
    CLASSES,
    FurnitureClass,
    build_furniture,
)
from concept_distill.datasets.converters.synthetic.mesh import (
    TriMesh,
    sample_surface,
    surface_color,
)
from concept_distill.datasets.converters.synthetic.rasterizer import rasterize, shade_image

BOX, CYL = 12, 42  # triangles of mesh.box and of mesh.cylinder (14 segments, top cap)

# Per class: (part name, triangles) in the builder's concatenation order. The bookshelf's
# books vary in number: after its 4-box frame, each box is a shelf or a book (books are the
# untextured boxes, tex_amp == 0).
PART_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    'cabinet': (('body', BOX), ('front', 3 * BOX)),  # door split + 2 handles
    'bed': (('frame', BOX), ('mattress', BOX), ('pillow', BOX), ('headboard', BOX)),
    'chair': (('seat', BOX), ('back', BOX), ('leg', 4 * BOX)),
    'sofa': (('base', BOX), ('back', BOX), ('arm', 2 * BOX), ('cushion', BOX)),
    'table': (('top', BOX), ('leg', 4 * BOX)),
    'door': (('slab', BOX), ('knob', BOX)),
    'window': (('glass', BOX), ('frame', 5 * BOX)),
    'bookshelf': (('frame', 4 * BOX), ('shelf', -1), ('book', -1)),
    'picture': (('frame', BOX), ('canvas', BOX)),
    'counter': (('body', BOX), ('top', BOX)),
    'desk': (('top', BOX), ('side', 2 * BOX), ('panel', BOX)),
    'curtain': (('fabric', 9 * BOX),),
    'refrigerator': (('body', BOX), ('seam', BOX), ('handle', BOX)),
    'showercurtrain': (('fabric', 7 * BOX), ('rod', BOX)),
    'toilet': (('bowl', CYL), ('tank', BOX), ('seat', BOX)),
    'sink': (('pedestal', CYL), ('basin', BOX), ('faucet', BOX)),
    'bathtub': (('wall', 4 * BOX), ('bottom', BOX)),
    'garbagebin': (('body', CYL), ('rim', CYL)),
}

OBJECT_CLASSES: tuple[str, ...] = tuple(c.name for c in CLASSES)
PART_NAMES: dict[str, tuple[str, ...]] = {k: tuple(p for p, _ in v)
                                          for k, v in PART_LAYOUTS.items()}

# Furniture frame (z up, back towards +y) -> object frame (y up, front towards +z).
TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def global_part_ids(classes: tuple[str, ...] = OBJECT_CLASSES) -> dict[str, list[int]]:
    """ShapeNetPart-style part ids: consecutive over `classes`, in each class's part order."""
    out, start = {}, 0
    for name in classes:
        n = len(PART_NAMES[name])
        out[name] = list(range(start, start + n))
        start += n
    return out


def part_labels_of_faces(class_name: str, mesh: TriMesh) -> np.ndarray:
    """Local part index (into ``PART_NAMES[class_name]``) of every face of a built mesh."""
    layout = PART_LAYOUTS[class_name]
    labels = np.full(len(mesh), -1, dtype=np.int64)
    start = 0
    for k, (_, count) in enumerate(layout):
        if count < 0:
            break
        labels[start:start + count] = k
        start += count
    if class_name == 'bookshelf':
        rest = np.arange(start, len(mesh))
        if len(rest) % BOX:
            raise ValueError(f'bookshelf mesh: {len(rest)} triangles after the frame are not '
                             f'whole boxes; PART_LAYOUTS no longer matches furniture.py')
        book = mesh.tex_amp[rest] == 0.0
        labels[rest] = np.where(book, 2, 1)
        start = len(mesh)
    if start != len(mesh):
        raise ValueError(f'{class_name}: the part layout spans {start} triangles but the '
                         f'builder made {len(mesh)}; PART_LAYOUTS no longer matches '
                         f'furniture.py')
    return labels


def primitive_ids_of_faces(class_name: str, mesh: TriMesh) -> np.ndarray:
    """Index of the primitive (box or cylinder) every face belongs to, in builder order."""
    part_labels_of_faces(class_name, mesh)  # checks that the layout still fits
    out = np.empty(len(mesh), dtype=np.int64)
    start, prim = 0, 0
    counts = [c for _, c in PART_LAYOUTS[class_name] if c > 0]
    counts.append(len(mesh) - sum(counts))  # the bookshelf's shelves and books (boxes)
    for count in counts:
        size = CYL if count == CYL else BOX
        for k in range(count // size):
            out[start + k * size:start + (k + 1) * size] = prim
            prim += 1
        start += count
    return out


def _inside_primitives(xyz: np.ndarray, own: np.ndarray, mesh: TriMesh, prim: np.ndarray,
                       eps: float = 1e-6) -> np.ndarray:
    """Which points lie inside or on another (convex) primitive of the mesh: surfaces that
    touch another part (a seat's underside on its legs, a cushion on its base) are hidden."""
    normals = mesh.normals()
    hidden = np.zeros(len(xyz), dtype=bool)
    for j in np.unique(prim):
        faces = np.nonzero(prim == j)[0]
        verts = mesh.tris[faces].reshape(-1, 3)
        lo, hi = verts.min(axis=0) - eps, verts.max(axis=0) + eps
        cand = np.nonzero((own != j) & ~hidden & (xyz >= lo).all(axis=1)
                          & (xyz <= hi).all(axis=1))[0]
        if not len(cand):
            continue
        n = normals[faces]
        offset = np.einsum('fk,fk->f', n, mesh.tris[faces, 0])
        hidden[cand] = (xyz[cand] @ n.T - offset <= eps).all(axis=1)
    return hidden


def sample_exposed(class_name: str, mesh: TriMesh, num_points: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples on the object's outer surface: (xyz (N, 3), face (N,)); samples
    that fall inside or on another primitive (contact faces, overlaps) are drawn again."""
    prim = primitive_ids_of_faces(class_name, mesh)
    xyz_all, face_all, have = [], [], 0
    for _ in range(20):
        xyz, face = sample_surface(mesh, max(2 * (num_points - have), 64), rng)
        keep = ~_inside_primitives(xyz, prim[face], mesh, prim)
        xyz_all.append(xyz[keep])
        face_all.append(face[keep])
        have += int(keep.sum())
        if have >= num_points:
            break
    else:
        raise RuntimeError(f'{class_name}: too few exposed surface samples')
    return np.concatenate(xyz_all)[:num_points], np.concatenate(face_all)[:num_points]


@dataclass
class ObjectView:
    """One rendered view of an object; `world` is the object frame its points are stored in."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float, 0 = background
    world2cam: np.ndarray  # 4x4 (camera: x right, y down, z forward)
    cam2img: np.ndarray  # 4x4 pinhole intrinsics (OpenCV pixel centres)

    def projection(self) -> np.ndarray:
        """4x4 matrix taking object-frame points to (u*z, v*z, z)."""
        return self.cam2img @ self.world2cam


@dataclass
class SyntheticObject:
    """A sampled object in the object frame (y up, inside the unit sphere)."""

    class_name: str
    label: int  # index into OBJECT_CLASSES
    instance: int  # instance number within its class
    xyz: np.ndarray  # (N, 3) float32
    normals: np.ndarray  # (N, 3) float32, outward unit normals
    rgb: np.ndarray  # (N, 3) uint8
    part: np.ndarray  # (N,) int64 local part index into PART_NAMES[class_name]
    size: np.ndarray  # (w, d, h) metres before normalisation
    scale: float  # metres per object-frame unit
    mesh: TriMesh = field(repr=False)  # the mesh in the object frame
    views: list[ObjectView] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        """Stable id of the object: '<class>_<instance, 4 digits>'."""
        return f'{self.class_name}_{self.instance:04d}'

    def subset(self, num_points: int, rng: np.random.Generator) -> SyntheticObject:
        """A copy with `num_points` of the points (a random subset; all of them if fewer)."""
        if num_points >= len(self.xyz):
            return self
        idx = np.sort(rng.choice(len(self.xyz), num_points, replace=False))
        return replace(self, xyz=self.xyz[idx], normals=self.normals[idx], rgb=self.rgb[idx],
                       part=self.part[idx])


def _normalised(mesh: TriMesh) -> tuple[TriMesh, float]:
    """The mesh in the object frame: y up, bounding-box centre at 0, max radius 1."""
    up = mesh.transformed(TO_Y_UP, np.zeros(3))
    verts = up.tris.reshape(-1, 3)
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    radius = float(np.linalg.norm(verts - centre, axis=1).max())
    out = up.transformed(np.eye(3) / radius, -centre / radius)
    return out, radius


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4x4 world-to-camera of a camera at `eye` looking at `target` (x right, y down)."""
    fwd = np.asarray(target, float) - np.asarray(eye, float)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-6:  # looking straight along `up`
        right = np.cross(fwd, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.stack([right, down, fwd], axis=1)
    cam2world[:3, 3] = eye
    return np.linalg.inv(cam2world)


def object_intrinsics(size: int, distance: float, margin: float = 1.1) -> np.ndarray:
    """4x4 intrinsics of a square image in which the unit sphere at `distance` fits."""
    half_angle = np.arcsin(min(margin / distance, 0.99))
    f = (size / 2) / np.tan(half_angle)
    k = np.eye(4)
    k[0, 0] = k[1, 1] = f
    k[0, 2] = k[1, 2] = (size - 1) / 2
    return k


def render_views(mesh: TriMesh, num_views: int, rng: np.random.Generator,
                 image_size: int = 128, distance: float = 2.5,
                 elevation_deg: tuple[float, float] = (10.0, 40.0)) -> list[ObjectView]:
    """`num_views` views from azimuths spread round the object (jittered), above it."""
    k = object_intrinsics(image_size, distance)
    views = []
    for v in range(num_views):
        az = 2 * np.pi * (v + rng.uniform(-0.25, 0.25)) / max(num_views, 1)
        el = np.deg2rad(rng.uniform(*elevation_deg))
        eye = distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        world2cam = look_at(eye, np.zeros(3))
        depth, face = rasterize(mesh, world2cam, k, image_size, image_size)
        rgb = shade_image(mesh, depth, face, np.linalg.inv(world2cam), k,
                          background=(1.0, 1.0, 1.0))
        views.append(ObjectView(rgb, depth, world2cam, k))
    return views


def make_object(cls: FurnitureClass | str, instance: int, seed: int = 0,
                num_points: int = 2048, num_views: int = 0, image_size: int = 128,
                normal_noise: float = 0.0) -> SyntheticObject:
    """Instance `instance` of class `cls` (depends only on (seed, class, instance))."""
    if isinstance(cls, str):
        cls = next((c for c in CLASSES if c.name == cls), None) or _unknown(cls)
    label = OBJECT_CLASSES.index(cls.name)
    rng = np.random.default_rng([seed, label, instance])
    local, size = build_furniture(cls, rng)
    parts = part_labels_of_faces(cls.name, local)
    mesh, radius = _normalised(local)
    mesh.sample[:] = True  # a whole object: also the faces hidden by floor or wall in a room
    xyz, face = sample_exposed(cls.name, mesh, num_points, rng)
    rgb = np.round(surface_color(mesh, face, xyz) * 255).astype(np.uint8)
    normals = mesh.normals()[face]
    if normal_noise > 0:
        normals = normals + rng.normal(0.0, normal_noise, normals.shape)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    views = render_views(mesh, num_views, rng, image_size) if num_views else []
    return SyntheticObject(cls.name, label, instance, xyz.astype(np.float32),
                           normals.astype(np.float32), rgb, parts[face], size, radius, mesh,
                           views)


def _unknown(name: str):
    raise KeyError(f'unknown synthetic object class {name!r}; known: {OBJECT_CLASSES}')


def make_objects(num_per_class: int, seed: int = 0, classes: tuple[str, ...] | None = None,
                 first_instance: int = 1, **kwargs) -> list[SyntheticObject]:
    """`num_per_class` instances of every class (class-major order); kwargs: make_object's."""
    names = OBJECT_CLASSES if classes is None else tuple(classes)
    return [make_object(name, first_instance + i, seed, **kwargs)
            for name in names for i in range(num_per_class)]
