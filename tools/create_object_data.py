"""Write synthetic single objects in the real object-dataset layouts (no download).

    python tools/create_object_data.py --out-dir data/synthetic_objects \
        [--num-per-class 10] [--test-per-class 2] [--val-per-class 1] [--seed 0] \
        [--classes chair table ...] [--layouts modelnet40 modelnet40_h5 scanobjectnn \
        shapenet_part shapenet55] [--num-views 4] [--image-size 128]

Prints a JSON summary (paths of the layouts, split counts). Layouts: docs/object_track.md.
"""
from __future__ import annotations

import argparse
import json

from concept_distill.datasets.converters.synthetic.objects import OBJECT_CLASSES
from concept_distill.datasets.converters.synthetic.synthetic_objects import (
    LAYOUTS,
    create_synthetic_objects,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out-dir', required=True, help='root to write the layouts under')
    p.add_argument('--num-per-class', type=int, default=10)
    p.add_argument('--test-per-class', type=int, default=2,
                   help='last instances of each class that form the test split (0: test = '
                        'train, for over-fitting)')
    p.add_argument('--val-per-class', type=int, default=1, help="ShapeNetPart's val split")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--classes', nargs='+', default=list(OBJECT_CLASSES),
                   choices=list(OBJECT_CLASSES))
    p.add_argument('--layouts', nargs='+', default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument('--num-points', type=int, default=10000)
    p.add_argument('--num-views', type=int, default=4, help='rendered views per ShapeNet-55 shape')
    p.add_argument('--image-size', type=int, default=128)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Generate and write; print and return the summary."""
    a = parse_args(argv)
    summary = create_synthetic_objects(
        a.out_dir, num_per_class=a.num_per_class, test_per_class=a.test_per_class,
        val_per_class=a.val_per_class, seed=a.seed, classes=a.classes, layouts=a.layouts,
        num_points=a.num_points, num_views=a.num_views, image_size=a.image_size)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    main()
