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
import sys

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
                   'other options, and delete points/, masks, seg_info/ and info files that '
                   'another tool wrote before converting (the raw scans are kept)')
    p.add_argument('--no-pairs', action='store_true', help='skip precomputing the frames\' '
                   'visible points (the `pairs` step, run by default with the paired configs\' '
                   'parameters)')
    for name in ('sunrgbd', 's3dis'):
        p = sub.add_parser(name, help=f'{name} as mmdet3d prepares it (v2 infos)')
        common(p)
        p.add_argument('--force', action='store_true', help='delete points/ (masks, seg_info/) '
                       'and info files that another tool wrote before converting (the raw data '
                       'is kept)')

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
    p.add_argument('--no-pairs', action='store_true', help='skip precomputing the frames\' '
                   'visible points (the `pairs` step, run by default with the paired configs\' '
                   'parameters)')

    p = sub.add_parser('pairs', help="precompute each frame's visible points (after scannet, "
                       'sunrgbd or synthetic; see docs/data_preparation.md)')
    common(p)
    from concept_distill.datasets.converters.frame_pairing import add_arguments

    add_arguments(p)
    return parser.parse_args(argv)


def with_pairs(args: argparse.Namespace, summary: dict) -> dict:
    """After `scannet` / `synthetic`: precompute every frame's visible points (the `pairs`
    step), which the paired configs read by default, unless --no-pairs (or a raw layout)."""
    if args.no_pairs or getattr(args, 'raw', False):
        return summary
    from concept_distill.datasets.converters.frame_pairing import precompute_frame_pairs

    # The parameters are those of configs/_base_/datasets/scannet-paired.py; an export
    # without depth frames gets no occlusion test, as its pipelines (with_depth=False) do.
    with progress_bar('frame pairs', 'frame') as progress:
        summary['pairs'] = precompute_frame_pairs(
            args.root_path, info_dir=args.out_dir, workers=args.workers,
            with_depth=not getattr(args, 'no_depth', False), progress=progress)
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Run one sub-command and print its summary as JSON."""
    args = parse_args(argv)
    import concept_distill  # noqa: F401  (registers components)

    if args.dataset == 'synthetic':
        from concept_distill.datasets.converters.output_guard import run_guarded
        from concept_distill.datasets.converters.synthetic.synthetic_command import run_synthetic

        summary = run_guarded(args.root_path, 'synthetic', vars(args), args.force,
                              lambda: with_pairs(args, run_synthetic(args)))
    elif args.dataset == 'scannet':
        from concept_distill.datasets.converters.scannet_converter import convert_scannet

        with progress_bar('scannet scenes (export, then mmdet3d infos)', 'scene') as progress:
            summary = convert_scannet(args.root_path, args.out_dir, args.frame_stride,
                                      args.max_frames_per_scene, not args.no_depth,
                                      args.workers, progress=progress, force=args.force)
        summary = with_pairs(args, summary)
    elif args.dataset == 'pairs':
        from concept_distill.datasets.converters.frame_pairing import pairs_from_args

        with progress_bar('frame pairs', 'frame') as progress:
            summary = pairs_from_args(args, progress)
    else:
        from concept_distill.datasets.converters.indoor_converters import convert_indoor

        with progress_bar(f'{args.dataset} samples', 'sample') as progress:
            summary = convert_indoor(args.dataset, args.root_path, args.out_dir, args.workers,
                                     progress=progress, force=args.force)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
