"""Export the backbone of a ConceptDistiller checkpoint as a downstream-ready checkpoint.

    python tools/export_backbone.py CHECKPOINT OUT [--config PRETRAIN_CFG]
        [--target-config DOWNSTREAM_CFG] [--prefix backbone.] [--trust-checkpoint] [--force]

The output holds only tensors (keys `backbone.*`) and plain metadata, so it loads with
torch.load(weights_only=True), i.e. with `init_cfg=dict(type='Pretrained', checkpoint=OUT,
prefix='backbone.')` in an unmodified mmdet3d config. Before writing, the keys and shapes are
checked against the target backbone (the downstream config's, else the pre-training config's);
any mismatch stops the export with the keys named. An existing different OUT is never replaced
without --force; the file is written atomically. The work is
concept_distill.checkpoint.export.export_backbone.
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='ConceptDistiller checkpoint (mmengine iter_N.pth)')
    parser.add_argument('out', help='output backbone checkpoint (.pth)')
    parser.add_argument('--config', help='pre-training config (default: the one stored in the '
                        'checkpoint meta)')
    parser.add_argument('--target-config', help='downstream config whose model.backbone the '
                        'export must fit (e.g. mmdet3d::votenet/votenet_8xb8_scannet-3d.py)')
    parser.add_argument('--prefix', default='backbone.', help='state-dict key prefix')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load CHECKPOINT with weights_only=False (mmengine training '
                        'checkpoints pickle their message hub; only for your own runs)')
    parser.add_argument('--force', action='store_true', help='replace a different OUT')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    from concept_distill.checkpoint.export import EXPORT_ERRORS, export_backbone
    from concept_distill.engine.cli import setup_process

    setup_process(init_default_scope=True)
    try:
        result = export_backbone(args.checkpoint, args.out, args.config, args.target_config,
                                 args.prefix, trusted=args.trust_checkpoint,
                                 overwrite=args.force)
    except EXPORT_ERRORS as err:
        print(f'export_backbone: {err}', file=sys.stderr)
        return 1
    print(f'export_backbone: wrote {result.path} ({result.num_tensors} tensors, checked '
          f'against {result.checked_against})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
