"""Checkpoint reading and writing with an explicit trust model.

torch >= 2.6 loads with ``weights_only=True`` by default: only tensors and plain Python
containers are unpickled, so a checkpoint cannot run code. mmengine's own training
checkpoints also pickle its message hub (``HistoryBuffer`` objects that unpickle through
``getattr``), which the safe loader rejects, and ``getattr`` must never be allow-listed.

Policy (docs/installation.md, "Checkpoint trust model"):
- resuming *your own* run loads with ``weights_only=False`` and says so in the log;
- any other load (``load_from``, ``init_cfg=dict(type='Pretrained')``, tools/test.py) stays
  ``weights_only=True`` unless the user passes ``--trust-checkpoint`` for a file they made.
- Checkpoints exported for transfer hold only tensors and plain metadata.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import tempfile
from typing import Any

import torch


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint holds pickled Python objects the safe loader refuses."""


def load_checkpoint_file(filename: str, map_location: Any = 'cpu', trusted: bool = False) -> Any:
    """Load a local checkpoint; ``weights_only`` unless ``trusted``; clear errors."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    if trusted:
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UntrustedCheckpointError(
            f'{filename} holds pickled Python objects besides tensors (for example an '
            'mmengine training checkpoint with its message hub), so it was not loaded with '
            'weights_only=True. If the file comes from your own run, resume it with --resume, '
            'or pass --trust-checkpoint to tools/train.py / tools/test.py (this runs code '
            'stored in the file); to share weights, export them with '
            f'tools/export_backbone.py. Loader said: {str(err).splitlines()[0]}') from err


def atomic_torch_save(obj: Any, filename: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename into place.

    A crash mid-write leaves the previous file intact instead of a truncated one.
    """
    folder = osp.dirname(osp.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.pth', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
