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
import re
import tempfile
import zipfile
from typing import Any

import torch


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint holds pickled Python objects the safe loader refuses."""


class NotACheckpointError(RuntimeError):
    """A file is not a readable PyTorch checkpoint (empty, truncated, or another format)."""


# torch.save writes a zip archive (``PK\x03\x04``) or, in its legacy format, a pickle stream
# (``\x80`` then the protocol number 2-5).
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOLS = range(2, 6)
# What the safe loader says when it meets a real pickled object (not a damaged stream).
_PICKLED_OBJECT = re.compile(r'GLOBAL (\S+) was not an allowed global|'
                             r'Unsupported global: (?!GLOBAL)(\S+)')
# What torch says when a file's contents (not its objects) are broken.
_DAMAGED = re.compile(r'PytorchStreamReader|corrupt|magic number|protocol version|truncated|'
                      r'invalid load key|archive', re.IGNORECASE)


def checkpoint_format_problem(filename: str) -> str | None:
    """Why ``filename`` cannot be a torch.save file, or None when its container looks sound.

    Cheap: reads the first bytes and, for a zip archive, its central directory (never the
    tensors), so a multi-GB checkpoint is not read twice.
    """
    size = osp.getsize(filename)
    if size == 0:
        return 'the file is empty'
    with open(filename, 'rb') as f:
        head = f.read(8)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(filename) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            return f'a zip archive that cannot be read ({err}; {size} bytes)'
        if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return f'a zip archive without data.pkl ({len(names)} members), not a torch.save file'
        return None
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return None
    return (f'not a zip/pickle archive: it starts with bytes {head.hex(" ")}, '
            f'{size} bytes in all')


def _not_a_checkpoint(filename: str, why: str) -> NotACheckpointError:
    return NotACheckpointError(
        f'{filename} is not a PyTorch checkpoint ({why}); it may be truncated or the wrong '
        'file. Copy or download it again, or pass the .pth written by training '
        '(work_dirs/<config>/iter_N.pth) or by tools/export_backbone.py.')


def _loader_detail(err: BaseException) -> str:
    """The loader's own reason in one line, without PyTorch's advice to unpickle unsafely."""
    text = str(err)
    match = _PICKLED_OBJECT.search(text)
    if match:
        return f'it refers to {match.group(1) or match.group(2)}'
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # torch puts its weights_only advice first and the unpickler's own words last
    useful = [ln for ln in lines
              if 'weights_only' not in ln and 'Weights only load failed' not in ln
              and not ln.startswith(('Check the documentation', 'Please file an issue'))]
    return f'{type(err).__name__}: {(useful or [""])[-1][:200]}'


def load_checkpoint_file(filename: str, map_location: Any = 'cpu', trusted: bool = False) -> Any:
    """Load a local checkpoint; ``weights_only`` unless ``trusted``; clear errors.

    A file that is not a checkpoint at all (empty, truncated, random bytes) raises
    ``NotACheckpointError`` whether trusted or not; a sound checkpoint holding pickled
    objects raises ``UntrustedCheckpointError`` unless trusted. Neither message repeats
    PyTorch's advice to load with ``weights_only=False``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename} (a relative path resolves '
                                f'against the working directory, {os.getcwd()})')
    problem = checkpoint_format_problem(filename)
    if problem is not None:
        raise _not_a_checkpoint(filename, problem)
    try:
        return torch.load(filename, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if not trusted and _PICKLED_OBJECT.search(str(err)):
            raise UntrustedCheckpointError(
                f'{filename} holds pickled Python objects besides tensors '
                f'({_loader_detail(err)}), as an mmengine training checkpoint does (its '
                'message hub), so the safe loader refused it. If the file comes from your own '
                'run, resume it with --resume, or pass --trust-checkpoint to tools/train.py / '
                'tools/test.py / tools/export_backbone.py (this runs code stored in the file); '
                'to share weights, export them with tools/export_backbone.py.') from None
        raise _not_a_checkpoint(filename, f'unreadable pickle stream: '
                                          f'{_loader_detail(err)}') from None
    except (EOFError, zipfile.BadZipFile) as err:
        raise _not_a_checkpoint(filename, f'unreadable contents: {_loader_detail(err)}') from None
    except (RuntimeError, ValueError) as err:
        # a container that looked sound but whose contents are damaged (a bad record in the
        # zip, a legacy stream cut short); other errors (e.g. a CUDA map_location on a CPU
        # machine) are not about the file and pass through unchanged
        if not _DAMAGED.search(str(err)):
            raise
        raise _not_a_checkpoint(filename, f'unreadable contents: {_loader_detail(err)}') from None


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
