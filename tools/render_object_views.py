"""Render views of every mesh under a folder into the object-pairs views layout.

    python tools/render_object_views.py MESH_DIR OUT_DIR [--num-views 8] [--image-size 224]
        [--up y|z] [--seed 0] [--distance 2.5] [--elevation 10 40] [--force]

OUT_DIR/<key>/{NN.png, NN_depth.png, cameras.json}; keys such as <synset>-<model> for
ShapeNetCore (docs/object_track.md). A rerun skips complete shapes; a non-empty OUT_DIR that
is not this tool's output with the same settings is refused unless --force (which empties
it). Prints a JSON summary. The work is concept_distill.datasets.converters.object_view_render.
"""
from __future__ import annotations

import argparse
import json
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('mesh_dir', help='folder searched recursively for .obj / .off meshes')
    p.add_argument('out_dir', help='views folder (e.g. data/ShapeNet55-34/shapenet_views)')
    p.add_argument('--num-views', type=int, default=8)
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--up', choices=['y', 'z'], default='y',
                   help='up axis of the meshes (ShapeNet: y, ModelNet: z)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--distance', type=float, default=2.5,
                   help='camera distance in bounding-sphere radii')
    p.add_argument('--elevation', type=float, nargs=2, default=[10.0, 40.0],
                   metavar=('MIN', 'MAX'), help='camera elevation range in degrees')
    p.add_argument('--force', action='store_true', help='empty a non-empty OUT_DIR first')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Render; print and return the summary (exit status 1 with a message on bad input)."""
    a = parse_args(argv)
    from concept_distill.datasets.converters.object_view_render import (
        MeshError,
        RenderOutputError,
        render_object_views,
    )
    from concept_distill.engine.progress import progress_bar

    try:
        with progress_bar('render', 'shape') as progress:
            summary = render_object_views(a.mesh_dir, a.out_dir, a.num_views, a.image_size,
                                          a.up, a.seed, a.distance, tuple(a.elevation),
                                          a.force, progress=progress)
    except (MeshError, RenderOutputError, ValueError) as e:
        sys.exit(f'render_object_views: {e}')
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    main()
