"""Records, per torchrun rank, the files a training run puts in place and the teacher-cache
rows it reads; imported by the runs of tests/test_engine/test_distributed_pretraining.py
through ``custom_imports`` (this folder on PYTHONPATH, ``CD_AUDIT_DIR`` set).

Checkpoints and backbone exports are written under a temporary name and renamed into place
(engine/runner.py, checkpoint/checkpoint_io.py), and so are a cache's index files, so every
``os.replace`` is one write.
Each event is a JSON line in ``$CD_AUDIT_DIR/rank<r>.jsonl``.
"""
from __future__ import annotations

import functools
import json
import os
import shutil

from concept_distill.datasets.teacher_cache import TeacherFeatureCache

_RANK = int(os.environ.get('RANK', '0'))
_LOG = os.path.join(os.environ['CD_AUDIT_DIR'], f'rank{_RANK}.jsonl')


def _record(**event) -> None:
    with open(_LOG, 'a') as f:
        f.write(json.dumps(dict(rank=_RANK, **event)) + '\n')


def _wrap(owner, name: str, event) -> None:
    original = getattr(owner, name)
    if getattr(original, '_audited', False):  # imported twice: wrap once
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        event(*args, **kwargs)
        return original(*args, **kwargs)

    wrapper._audited = True
    setattr(owner, name, wrapper)


_wrap(os, 'replace', lambda src, dst, **kw: _record(kind='write', path=os.fspath(dst)))
_wrap(shutil, 'copyfile', lambda src, dst, **kw: _record(kind='write', path=os.fspath(dst)))
_wrap(shutil, 'copy2', lambda src, dst, **kw: _record(kind='write', path=os.fspath(dst)))
_wrap(TeacherFeatureCache, 'get', lambda self, frame_id, *a, **kw: _record(
    kind='cache_read', cache=os.path.realpath(self.cache_dir), frame=frame_id))
