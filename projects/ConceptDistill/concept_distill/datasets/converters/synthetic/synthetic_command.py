"""The `synthetic` sub-command of tools/create_data.py: a ScanNet-format root (infos) or
ScanNet's raw layout (scans/, to be prepared with the `scannet` sub-command)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from concept_distill.datasets.converters.synthetic.scannet_raw_writer import (
    write_label_map,
    write_raw_scene,
)
from concept_distill.datasets.converters.synthetic.synthetic_scannet import (
    create_synthetic_scannet,
    generate_scenes,
    split_scenes,
)
from concept_distill.engine.progress import progress_bar


def write_raw_layout(root: Path, args: argparse.Namespace) -> dict:
    """ScanNet's raw layout: scans/<scene>/ (.sens, meshes, labels), the label map and
    meta_data/scannetv2_{train,val,test}.txt."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    with progress_bar('synthetic raw scenes', 'scene') as progress:
        for scene in generate_scenes(args.num_scenes, args.seed, args.num_frames,
                                     args.points_per_scene, tuple(args.image_size)):
            write_raw_scene(root / 'scans', scene)
            names.append(scene.name)
            progress(len(names), args.num_scenes)
    write_label_map(root / 'scannetv2-labels.combined.tsv')
    train, val = split_scenes(names, args.val_scenes)
    (root / 'meta_data').mkdir(exist_ok=True)
    for split, members in (('train', train), ('val', val), ('test', [])):
        (root / 'meta_data' / f'scannetv2_{split}.txt').write_text(
            ''.join(f'{n}\n' for n in members))
    return dict(root=str(root), raw=True, scenes=names, train=train, val=val)


def run_synthetic(args: argparse.Namespace) -> dict:
    """Generate the synthetic root that ``args`` describe (tools/create_data.py's options);
    the info files go to ``args.out_dir`` when given. Returns the summary."""
    root = Path(args.root_path)
    if args.raw:
        return write_raw_layout(root, args)
    with progress_bar('synthetic scenes', 'scene') as progress:
        summary = create_synthetic_scannet(root, args.num_scenes, args.seed, args.num_frames,
                                           args.points_per_scene, tuple(args.image_size),
                                           args.val_scenes, progress=progress)
    out = Path(args.out_dir) if args.out_dir else root
    if out.resolve() != root.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for split in ('train', 'val'):
            shutil.move(str(root / f'scannet_infos_{split}.pkl'),
                        str(out / f'scannet_infos_{split}.pkl'))
    return summary
