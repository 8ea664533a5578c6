"""Export the backbone of a ConceptDistiller checkpoint as a downstream-ready checkpoint.

    python tools/export_backbone.py CHECKPOINT OUT [--config PRETRAIN_CFG]
        [--target-config DOWNSTREAM_CFG] [--prefix backbone.] [--trust-checkpoint] [--force]

The output holds only tensors (keys `backbone.*`) and plain metadata, so it loads with
torch.load(weights_only=True), i.e. with `init_cfg=dict(type='Pretrained', checkpoint=OUT,
prefix='backbone.')` in an unmodified mmdet3d config. Before writing, the keys and shapes are
checked against the target backbone (the downstream config's, else the pre-training config's);
any mismatch stops the export with the keys named. An existing different OUT is never replaced
without --force; the file is written atomically.
"""
from __future__ import annotations

import argparse
import importlib
import os.path as osp
import sys

from mmengine.config import Config


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


def load_config(path: str) -> Config:
    """Config.fromfile, also for package configs written as 'mmdet3d::votenet/x.py'."""
    if '::' in path:
        package, rel = path.split('::', 1)
        root = osp.dirname(importlib.import_module(package).__file__)
        path = osp.join(root, '.mim', 'configs', rel)
    return Config.fromfile(path)


def _source_backbone_cfg(args: argparse.Namespace, ckpt: dict) -> tuple[dict | None, str]:
    """The pre-training backbone config and where it came from."""
    if args.config:
        return load_config(args.config).model.get('backbone'), args.config
    cfg_text = (ckpt.get('meta') or {}).get('cfg')
    if isinstance(cfg_text, str) and cfg_text:
        cfg = Config.fromstring(cfg_text, file_format='.py')
        return cfg.model.get('backbone'), cfg.get('filename', '') or 'checkpoint meta'
    return None, ''


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    from mmdet3d.utils import register_all_modules

    import concept_distill  # noqa: F401  (registers components)
    from concept_distill.checkpoint.backbone_checkpoint import (
        BackboneCheckpointError,
        backbone_meta,
        check_backbone_checkpoint,
        extract_backbone_state,
        load_checkpoint_dict,
        save_backbone_checkpoint,
    )
    from concept_distill.engine import UntrustedCheckpointError

    register_all_modules(init_default_scope=True)
    try:
        ckpt = load_checkpoint_dict(args.checkpoint, trusted=args.trust_checkpoint)
        state = extract_backbone_state(ckpt, args.prefix, args.checkpoint)
        source_cfg, source_name = _source_backbone_cfg(args, ckpt)
        if args.target_config:
            target = load_config(args.target_config).model
            target_name = args.target_config
        elif source_cfg is not None:
            target, target_name = source_cfg, source_name
        else:
            raise BackboneCheckpointError(
                f'{args.checkpoint} stores no config: pass --config or --target-config so the '
                'export can be checked against a backbone')
        check_backbone_checkpoint({'state_dict': {args.prefix + k: v for k, v in state.items()}},
                                  target, args.prefix)
        src_meta = ckpt.get('meta') or {}
        meta = backbone_meta(
            source_cfg if source_cfg is not None else (
                target.get('backbone') if 'backbone' in target else target),
            src_meta.get('teacher') if isinstance(src_meta.get('teacher'), dict) else None,
            source_config=source_name or '',
            source_checkpoint=osp.abspath(args.checkpoint),
            iteration=int(src_meta.get('iter', -1)),
            epoch=int(src_meta.get('epoch', -1)),
            checked_against=target_name)
        save_backbone_checkpoint(state, meta, args.out, args.prefix, overwrite=args.force)
    except (UntrustedCheckpointError, BackboneCheckpointError, FileExistsError,
            FileNotFoundError) as err:
        print(f'export_backbone: {err}', file=sys.stderr)
        return 1
    print(f'export_backbone: wrote {args.out} ({len(state)} tensors, checked against '
          f'{target_name})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
