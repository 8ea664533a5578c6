"""`create_synthetic_scannet`: a ScanNet-format data root of generated rooms."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from concept_distill.datasets.converters.scannet_info import (
    SCANNET_CLASSES,
    dump_infos,
    frame_entry,
    scannet_data_info,
    write_posed_frame,
    write_scene_arrays,
    write_seg_info,
)
from concept_distill.datasets.converters.synthetic.scene import SyntheticScene, make_scene


def scene_name(index: int) -> str:
    """ScanNet-style scene name of the index-th synthetic scene."""
    return f'scene{index:04d}_00'


def generate_scenes(num_scenes: int, seed: int, num_frames: int, points_per_scene: int,
                    image_size: tuple[int, int], identity_alignment: bool = False):
    """Yield the scenes one by one (scene i depends only on (seed, i))."""
    for i in range(num_scenes):
        rng = np.random.default_rng([seed, i])
        yield make_scene(scene_name(i), i, rng, num_frames, points_per_scene, image_size,
                         identity_alignment)


def split_scenes(names: list[str], val_scenes: int | Sequence | None) -> tuple[list, list]:
    """(train, val) scene names; one scene goes to both splits (for over-fitting tests)."""
    if len(names) == 1:
        return list(names), list(names)
    if val_scenes is None:
        val_scenes = max(1, len(names) // 4)
    if isinstance(val_scenes, int):
        val = names[len(names) - val_scenes:]
    else:
        val = [names[v] if isinstance(v, int) else v for v in val_scenes]
    return [n for n in names if n not in val], list(val)


def write_scene(root: Path, scene: SyntheticScene) -> dict:
    """Write one scene's arrays and frames; return its info entry (frames included)."""
    write_scene_arrays(root, scene.name, scene.points, scene.instance, scene.semantic)
    frames = []
    for i, fr in enumerate(scene.frames):
        write_posed_frame(root, scene.name, i, fr.rgb, fr.depth, fr.cam2world)
        frames.append(frame_entry(scene.name, i, fr.cam2img, fr.cam2world, fr.cam2img))
    if scene.frames:
        np.savetxt(root / 'posed_images' / scene.name / 'intrinsic.txt', scene.frames[0].cam2img,
                   fmt='%.8f')
    boxes, labels = scene.boxes()
    return scannet_data_info(scene.name, boxes, labels, scene.axis_align_matrix, frames)


def create_synthetic_scannet(out_dir: str | Path, num_scenes: int = 4, seed: int = 0,
                             num_frames: int = 8, points_per_scene: int = 40000,
                             image_size: tuple[int, int] = (240, 320),
                             val_scenes: int | Sequence | None = None,
                             identity_alignment: bool = False,
                             progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a ScanNet-format root of synthetic rooms that every ScanNet config here reads.

    Layout (mmdet3d's, plus posed frames): points/, instance_mask/, semantic_mask/ (NYU40
    ids), posed_images/<scene>/<i>.{jpg,png,txt} + intrinsic.txt, seg_info/,
    meta_data/scannetv2_{train,val}.txt and scannet_infos_{train,val}.pkl (v2 infos with
    `frames`). Deterministic in `seed`. `val_scenes`: how many (last) scenes, or which names
    or indices, form the val split; default a quarter; a single scene is in both splits.
    `progress(done, total)` is called after every scene. Returns a summary dict.
    """
    start = time.perf_counter()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    infos, semantic, class_counts = {}, {}, Counter()
    num_points = num_frames_written = 0
    for scene in generate_scenes(num_scenes, seed, num_frames, points_per_scene, image_size,
                                 identity_alignment):
        info = write_scene(root, scene)
        infos[scene.name] = info
        semantic[scene.name] = scene.semantic
        class_counts.update(SCANNET_CLASSES[i['bbox_label_3d']] for i in info['instances'])
        num_points += len(scene.points)
        num_frames_written += len(info['frames'])
        if progress is not None:
            progress(len(infos), num_scenes)

    names = list(infos)
    train, val = split_scenes(names, val_scenes)
    (root / 'meta_data').mkdir(exist_ok=True)
    for split, members in (('train', train), ('val', val)):
        dump_infos(root / f'scannet_infos_{split}.pkl', [infos[n] for n in members])
        write_seg_info(root, split, [semantic[n] for n in members])
        (root / 'meta_data' / f'scannetv2_{split}.txt').write_text(''.join(
            f'{n}\n' for n in members))
    return dict(root=str(root), scenes=names, train=train, val=val, num_points=num_points,
                num_frames=num_frames_written,
                num_instances=int(sum(class_counts.values())),
                class_counts=dict(sorted(class_counts.items())),
                seconds=round(time.perf_counter() - start, 3))
