"""Prepare datasets: mmdet3d's converters plus what they drop (ScanNet's posed frames), and a
synthetic ScanNet-format generator.

    python tools/create_data.py scannet   --root-path data/scannet [--out-dir DIR]
                                          [--frame-stride 20] [--max-frames-per-scene N]
                                          [--no-depth] [--workers 2]
    python tools/create_data.py sunrgbd   --root-path data/sunrgbd [--out-dir DIR]
    python tools/create_data.py s3dis     --root-path data/s3dis [--out-dir DIR]
    python tools/create_data.py synthetic --root-path DIR --out-dir DIR --num-scenes N --seed S
                                          [--num-frames 8] [--points-per-scene 40000]
                                          [--image-size 240 320] [--val-scenes K] [--raw]
    python tools/create_data.py pairs     --root-path DIR [--out-dir INFO_DIR] [--ann-files ...]
                                          [--depth-range 0.1 10] [--occlusion-tol 0.1]
                                          [--no-depth-test] [--workers 2]

See docs/data_preparation.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from concept_distill.engine.progress import progress_bar


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (one sub-command per dataset)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='dataset', required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument('--root-path', required=True, help='dataset root')
        p.add_argument('--out-dir', default=None, help='where the info files go (default: '
                       'the root)')
        p.add_argument('--workers', type=int, default=2, help='converter threads')

    p = sub.add_parser('scannet', help='ScanNet scans -> v2 infos with posed frames')
    common(p)
    p.add_argument('--frame-stride', type=int, default=20,
                   help='keep every N-th frame of each scene (default 20)')
    p.add_argument('--max-frames-per-scene', type=int, default=None)
    p.add_argument('--no-depth', action='store_true', help='do not export depth frames')
    p.add_argument('--force', action='store_true', help='re-export scenes exported with '
                   'other options')
    for name in ('sunrgbd', 's3dis'):
        common(sub.add_parser(name, help=f'{name} as mmdet3d prepares it (v2 infos)'))

    p = sub.add_parser('synthetic', help='generate a synthetic ScanNet-format root')
    common(p)
    p.add_argument('--num-scenes', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-frames', type=int, default=8)
    p.add_argument('--points-per-scene', type=int, default=40000)
    p.add_argument('--image-size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'))
    p.add_argument('--val-scenes', type=int, default=None,
                   help='number of scenes in the val split (default: a quarter)')
    p.add_argument('--raw', action='store_true',
                   help="write ScanNet's raw layout (scans/, .sens, label tsv, meta_data/) "
                   'instead, to be prepared with the `scannet` sub-command')
    p.add_argument('--force', action='store_true', help='empty a non-empty --root-path that '
                   'holds something else (everything in it is deleted)')

    p = sub.add_parser('pairs', help="precompute each frame's visible points (after scannet, "
                       'sunrgbd or synthetic; see docs/data_preparation.md)')
    common(p)
    from concept_distill.datasets.converters.frame_pairing import add_arguments

    add_arguments(p)
    return parser.parse_args(argv)


def synthetic(args: argparse.Namespace) -> dict:
    """The `synthetic` sub-command."""
    from concept_distill.datasets.converters.synthetic import (
        create_synthetic_scannet,
        generate_scenes,
    )
    from concept_distill.datasets.converters.synthetic.scannet_raw_writer import (
        write_label_map,
        write_raw_scene,
    )
    from concept_distill.datasets.converters.synthetic.synthetic_scannet import split_scenes

    root = Path(args.root_path)
    if args.raw:
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


def main(argv: list[str] | None = None) -> dict:
    """Run one sub-command and print its summary as JSON."""
    args = parse_args(argv)
    import concept_distill  # noqa: F401  (registers components)

    if args.dataset == 'synthetic':
        from concept_distill.datasets.converters.output_guard import run_guarded

        summary = run_guarded(args.root_path, 'synthetic', vars(args), args.force,
                              lambda: synthetic(args))
    elif args.dataset == 'scannet':
        from concept_distill.datasets.converters.scannet_converter import convert_scannet

        with progress_bar('scannet scenes (export, then mmdet3d infos)', 'scene') as progress:
            summary = convert_scannet(args.root_path, args.out_dir, args.frame_stride,
                                      args.max_frames_per_scene, not args.no_depth,
                                      args.workers, progress=progress, force=args.force)
    elif args.dataset == 'pairs':
        from concept_distill.datasets.converters.frame_pairing import pairs_from_args

        with progress_bar('frame pairs', 'frame') as progress:
            summary = pairs_from_args(args, progress)
    else:
        from concept_distill.datasets.converters.indoor_converters import run_indoor_converter

        with progress_bar(f'{args.dataset} samples', 'sample') as progress:
            written = run_indoor_converter(args.dataset, args.root_path,
                                           args.out_dir or args.root_path, args.workers,
                                           progress=progress)
        summary = dict(root=args.root_path, info_files=[str(p) for p in written])
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
