"""Export a ConceptDistiller checkpoint's backbone as a downstream-ready checkpoint, checked
against the backbone it must fit (what tools/export_backbone.py runs)."""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Mapping
from typing import NamedTuple

from mmengine.config import Config

from concept_distill.checkpoint.backbone_checkpoint import (
    BackboneCheckpointError,
    backbone_meta,
    check_backbone_checkpoint,
    extract_backbone_state,
    load_checkpoint_dict,
    save_backbone_checkpoint,
)
from concept_distill.checkpoint.checkpoint_io import NotACheckpointError, UntrustedCheckpointError
from concept_distill.engine.cli import load_config

# What a failed export raises: the CLI reports these as one line and exits 1.
EXPORT_ERRORS = (NotACheckpointError, UntrustedCheckpointError, BackboneCheckpointError,
                 FileExistsError, FileNotFoundError, ModuleNotFoundError)


class ExportResult(NamedTuple):
    """Where the backbone went, how many tensors it holds, what it was checked against."""

    path: str
    num_tensors: int
    checked_against: str


def source_backbone_cfg(checkpoint: Mapping, config: str | None = None
                        ) -> tuple[Mapping | None, str]:
    """The pre-training backbone config (from ``config``, else the checkpoint's meta) and
    where it came from ('' when neither has one)."""
    if config:
        return load_config(config).model.get('backbone'), config
    cfg_text = (checkpoint.get('meta') or {}).get('cfg')
    if isinstance(cfg_text, str) and cfg_text:
        cfg = Config.fromstring(cfg_text, file_format='.py')
        return cfg.model.get('backbone'), cfg.get('filename', '') or 'checkpoint meta'
    return None, ''


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike,
                    config: str | None = None, target_config: str | None = None,
                    prefix: str = 'backbone.', trusted: bool = False,
                    overwrite: bool = False) -> ExportResult:
    """Write ``checkpoint``'s ``prefix`` tensors to ``out`` with plain metadata.

    The keys and shapes are checked first against the target backbone: ``target_config``'s
    model (a path or ``mmdet3d::...``), else the pre-training config (``config``, else the
    one stored in the checkpoint); any mismatch raises ``BackboneCheckpointError`` naming the
    keys. A different existing ``out`` is replaced only with ``overwrite``; the write is
    atomic. Errors are those of ``EXPORT_ERRORS``.
    """
    checkpoint, out = str(checkpoint), str(out)
    ckpt = load_checkpoint_dict(checkpoint, trusted=trusted)
    state = extract_backbone_state(ckpt, prefix, checkpoint)
    source_cfg, source_name = source_backbone_cfg(ckpt, config)
    if target_config:
        target, target_name = load_config(target_config).model, target_config
    elif source_cfg is not None:
        target, target_name = source_cfg, source_name
    else:
        raise BackboneCheckpointError(
            f'{checkpoint} stores no config: pass --config or --target-config so the export '
            'can be checked against a backbone')
    check_backbone_checkpoint({'state_dict': {prefix + k: v for k, v in state.items()}},
                              target, prefix)
    src_meta = ckpt.get('meta') or {}
    teacher = src_meta.get('teacher')
    meta = backbone_meta(
        source_cfg if source_cfg is not None else target.get('backbone', target),
        teacher if isinstance(teacher, dict) else None,
        source_config=source_name or '',
        source_checkpoint=osp.abspath(checkpoint),
        iteration=int(src_meta.get('iter', -1)),
        epoch=int(src_meta.get('epoch', -1)),
        checked_against=target_name)
    save_backbone_checkpoint(state, meta, out, prefix, overwrite=overwrite)
    return ExportResult(out, len(state), target_name)
