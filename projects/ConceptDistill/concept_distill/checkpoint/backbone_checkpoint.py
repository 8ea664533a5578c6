"""Downstream-ready backbone checkpoints: extract, validate against a target, write atomically."""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from mmdet3d.registry import MODELS
from torch import nn

from concept_distill.checkpoint.checkpoint_io import atomic_torch_save, load_checkpoint_file

FORMAT = 'concept_distill.backbone/v1'


class BackboneCheckpointError(ValueError):
    """A checkpoint does not fit the target backbone (names the keys) or is not a backbone."""


class KeyReport(NamedTuple):
    """Result of comparing a backbone state dict with a target backbone."""

    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[tuple[str, tuple, tuple]]  # key, checkpoint shape, target shape

    @property
    def ok(self) -> bool:
        """True when the checkpoint covers the target exactly (keys and shapes)."""
        return not (self.missing or self.unexpected or self.shape_mismatch)


def to_plain(value: Any) -> Any:
    """Config values -> plain python (dict/list/str/int/float/bool/None) for weights_only files."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _state_dict_of(checkpoint: Mapping) -> Mapping:
    """The state dict inside an mmengine checkpoint, or the mapping itself."""
    if 'state_dict' in checkpoint and isinstance(checkpoint['state_dict'], Mapping):
        return checkpoint['state_dict']
    return checkpoint


def load_checkpoint_dict(checkpoint: str | os.PathLike | Mapping, trusted: bool = False) -> dict:
    """A checkpoint path (loaded weights_only unless trusted) or an already loaded mapping."""
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint)
    loaded = load_checkpoint_file(str(checkpoint), map_location='cpu', trusted=trusted)
    if not isinstance(loaded, Mapping):
        raise BackboneCheckpointError(f'{checkpoint} holds a {type(loaded).__name__}, not a '
                                      f'checkpoint dict')
    return dict(loaded)


def extract_backbone_state(checkpoint: Mapping, prefix: str = 'backbone.',
                           source: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """`prefix`-stripped tensors of a checkpoint; an error naming the file when there are none."""
    state = _state_dict_of(checkpoint)
    out = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    if not out:
        sample = ', '.join(list(state)[:5]) or '(no keys)'
        raise BackboneCheckpointError(
            f'{source} has no keys starting with {prefix!r}: it is not a backbone checkpoint '
            f'(it has {len(state)} keys, e.g. {sample}). Export one with '
            f'tools/export_backbone.py from a ConceptDistiller checkpoint.')
    return out


def build_backbone(target: nn.Module | Mapping) -> nn.Module:
    """A backbone module, or a backbone / full model config (its `backbone` is used)."""
    if isinstance(target, nn.Module):
        return target
    cfg = dict(target)
    if 'backbone' in cfg and isinstance(cfg['backbone'], Mapping):
        cfg = dict(cfg['backbone'])
    cfg.pop('init_cfg', None)  # validating must not load anything
    return MODELS.build(cfg)


def compare_backbone_keys(state: Mapping[str, torch.Tensor], target: nn.Module) -> KeyReport:
    """Missing / unexpected / wrongly shaped keys of `state` (prefix stripped) for `target`."""
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted((k, tuple(state[k].shape), tuple(own[k].shape))
                   for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    return KeyReport(missing, unexpected, wrong)


def _short(keys: list, limit: int = 8) -> str:
    shown = ', '.join(str(k) for k in keys[:limit])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown


def check_backbone_checkpoint(checkpoint: str | os.PathLike | Mapping,
                              target: nn.Module | Mapping,
                              prefix: str = 'backbone.',
                              trusted: bool = False) -> KeyReport:
    """Raise `BackboneCheckpointError` naming every mismatch unless the checkpoint fits exactly.

    `target` is a backbone module or a backbone / model config dict. Returns the (clean) report.
    """
    source = str(checkpoint) if not isinstance(checkpoint, Mapping) else 'checkpoint'
    ckpt = load_checkpoint_dict(checkpoint, trusted=trusted)
    state = extract_backbone_state(ckpt, prefix, source)
    module = build_backbone(target)
    report = compare_backbone_keys(state, module)
    if not report.ok:
        meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), Mapping) else {}
        src_type = meta.get('backbone_type', 'unknown')
        parts = [f'{source} does not match the target backbone {type(module).__name__} '
                 f'(checkpoint backbone: {src_type}):']
        if report.missing:
            parts.append(f'{len(report.missing)} missing keys [{_short(report.missing)}]')
        if report.unexpected:
            parts.append(f'{len(report.unexpected)} unexpected keys '
                         f'[{_short(report.unexpected)}]')
        if report.shape_mismatch:
            shapes = [f'{k}: checkpoint {a} vs target {b}' for k, a, b in report.shape_mismatch]
            parts.append(f'{len(shapes)} shape mismatches [{_short(shapes, 4)}]')
        parts.append('Loading it with init_cfg=Pretrained would leave these weights randomly '
                     'initialised; pre-train the same backbone config as the downstream model.')
        raise BackboneCheckpointError(' '.join(parts[:1]) + ' ' + '; '.join(parts[1:-1]) + '. '
                                      + parts[-1])
    return report


def _same_content(path: str, payload: dict) -> bool:
    """Whether the file at `path` holds the same tensors and metadata as `payload`."""
    try:
        old = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # unreadable / foreign file: certainly not the same content
        return False
    if not isinstance(old, Mapping) or set(old) != set(payload):
        return False
    old_sd, new_sd = old.get('state_dict', {}), payload['state_dict']
    if set(old_sd) != set(new_sd):
        return False
    if any(old_sd[k].shape != new_sd[k].shape or not torch.equal(old_sd[k], new_sd[k])
           for k in new_sd):
        return False
    return old.get('meta') == payload.get('meta')


def save_backbone_checkpoint(state: Mapping[str, torch.Tensor], meta: Mapping, path: str,
                             prefix: str = 'backbone.', overwrite: bool = False) -> str:
    """Write {'state_dict': {prefix+key: tensor}, 'meta': plain dict} atomically.

    `state` holds backbone keys without the prefix. An existing file with the same content is
    left alone; a different one raises FileExistsError unless `overwrite`.
    """
    payload = dict(
        state_dict={prefix + k: v.detach().cpu().clone() for k, v in state.items()},
        meta=to_plain(dict(meta, format=FORMAT)))
    if osp.exists(path):
        if _same_content(path, payload):
            return path
        if not overwrite:
            raise FileExistsError(f'{path} exists and holds a different checkpoint; refusing '
                                  f'to overwrite it (pass overwrite=True / --force)')
    atomic_torch_save(payload, path)
    return path


def backbone_meta(backbone_cfg: Mapping | None, teacher_key: Mapping | None = None,
                  **extra: Any) -> dict:
    """The metadata stored with an exported backbone (plain types only)."""
    cfg = to_plain(backbone_cfg or {})
    cfg.pop('init_cfg', None)
    teacher = None
    if teacher_key is not None:
        teacher = {k: teacher_key.get(k) for k in ('model_name', 'weights_digest',
                                                   'mapping_digest')}
    return to_plain(dict(backbone_type=cfg.get('type', 'unknown'), backbone_cfg=cfg,
                         teacher=teacher, **extra))
