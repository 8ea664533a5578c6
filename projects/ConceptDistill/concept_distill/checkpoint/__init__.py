"""Checkpoints: the trusted-loading policy, atomic writes, and downstream-ready backbone
checkpoints (extract, save, check against a target backbone, export)."""
from concept_distill.checkpoint.backbone_checkpoint import (
    BackboneCheckpointError,
    KeyReport,
    backbone_meta,
    check_backbone_checkpoint,
    compare_backbone_keys,
    extract_backbone_state,
    save_backbone_checkpoint,
)
from concept_distill.checkpoint.checkpoint_io import (
    NotACheckpointError,
    UntrustedCheckpointError,
    atomic_torch_save,
    load_checkpoint_file,
)

__all__ = ['BackboneCheckpointError', 'KeyReport', 'NotACheckpointError',
           'UntrustedCheckpointError',
           'atomic_torch_save', 'backbone_meta', 'check_backbone_checkpoint',
           'compare_backbone_keys', 'extract_backbone_state', 'load_checkpoint_file',
           'save_backbone_checkpoint']
