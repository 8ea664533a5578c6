"""On-disk teacher-feature cache: float16 memory-mapped arrays + a JSON index, no pickle.

Layout of a cache directory:

    index.json      key (teacher cache_key + image preprocessing), frame ids, array shapes
    global.npy      (N, D) float16 global embeddings
    tokens.npy      (N, T, D) float16 token set (optional: patch or prefix tokens)
    valid.npy       (N,) uint8: 1 = computed, 0 = the frame's image could not be read
    progress.json   {"done": n}: rows [0, n) are on disk (a killed run resumes from n)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


class TeacherCacheError(RuntimeError):
    """A teacher-feature cache is missing, incomplete or does not match the config."""


def _plain(value):
    """JSON-comparable form (tuples -> lists, numpy scalars -> python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def key_mismatch(cache_key: dict, expected: dict, prefix: str = '') -> tuple[str, object,
                                                                              object] | None:
    """First field of `expected` whose value differs in `cache_key`: (name, cached, expected).

    Only fields present in `expected` are compared, so a config may check a partial key.
    """
    for name, want in _plain(expected).items():
        have = cache_key.get(name, '<absent>')
        if isinstance(want, dict) and isinstance(have, dict):
            sub = key_mismatch(have, want, f'{prefix}{name}.')
            if sub is not None:
                return sub
        elif have != want:
            return f'{prefix}{name}', have, want
    return None


class TeacherFeatureCache:
    """Reader/writer of one cache directory (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        self.index_path = self.cache_dir / 'index.json'
        self._index: dict | None = None
        self._rows: dict[str, int] | None = None
        self._arrays: dict | None = None
        self._pid: int | None = None

    # ------------------------------------------------------------------ writing
    @classmethod
    def create_or_resume(cls, cache_dir: str | os.PathLike, key: dict, frame_ids: list[str],
                         global_dim: int, tokens_shape: tuple[int, int] | None = None,
                         tokens_name: str | None = None) -> tuple[TeacherFeatureCache, int]:
        """Open a cache for writing: (cache, first row still to compute).

        An existing cache with the same key and frames resumes; one with another key or
        other frames is an error (delete it or choose another directory).
        """
        cache = cls(cache_dir)
        key = _plain(key)
        if cache.index_path.exists():
            index = json.loads(cache.index_path.read_text())
            diff = key_mismatch(index['key'], key)
            if diff is None:
                diff = key_mismatch(key, index['key'])
            held = (index.get('tokens') or {}).get('name')
            if diff is None and held != tokens_name:
                diff = ('tokens', held, tokens_name)
            if diff is not None or index['frame_ids'] != list(frame_ids):
                what = (f'field {diff[0]!r} is {diff[1]!r} there but {diff[2]!r} now' if diff
                        else 'its frame list differs')
                raise TeacherCacheError(
                    f'{cache.cache_dir} already holds another teacher cache ({what}); '
                    'delete it or choose another --cache-dir')
            return cache, cache.num_done()
        cache.cache_dir.mkdir(parents=True, exist_ok=True)
        n = len(frame_ids)
        np.lib.format.open_memmap(cache.cache_dir / 'global.npy', mode='w+', dtype=np.float16,
                                  shape=(n, global_dim))
        np.lib.format.open_memmap(cache.cache_dir / 'valid.npy', mode='w+', dtype=np.uint8,
                                  shape=(n,))
        tokens = None
        if tokens_shape is not None:
            np.lib.format.open_memmap(cache.cache_dir / 'tokens.npy', mode='w+',
                                      dtype=np.float16, shape=(n, *tokens_shape))
            tokens = dict(name=tokens_name, shape=[n, *tokens_shape])
        _write_json(cache.cache_dir / 'progress.json', dict(done=0))
        # The index is written last: its presence means the arrays exist.
        _write_json(cache.index_path, dict(
            version=CACHE_VERSION, key=key, frame_ids=list(frame_ids),
            global_shape=[n, global_dim], dtype='float16', tokens=tokens))
        return cache, 0

    def write_rows(self, start: int, global_feats: np.ndarray, valid: np.ndarray,
                   tokens: np.ndarray | None = None) -> None:
        """Store rows [start, start + len) and then advance the progress marker."""
        stop = start + len(global_feats)
        g = np.load(self.cache_dir / 'global.npy', mmap_mode='r+')
        g[start:stop] = global_feats.astype(np.float16)
        g.flush()
        v = np.load(self.cache_dir / 'valid.npy', mmap_mode='r+')
        v[start:stop] = valid.astype(np.uint8)
        v.flush()
        if tokens is not None:
            t = np.load(self.cache_dir / 'tokens.npy', mmap_mode='r+')
            t[start:stop] = tokens.astype(np.float16)
            t.flush()
        del g, v
        # Only after the arrays are flushed: a kill before this line recomputes the chunk.
        _write_json(self.cache_dir / 'progress.json', dict(done=stop))

    # ------------------------------------------------------------------ reading
    @property
    def index(self) -> dict:
        """The parsed index.json."""
        if self._index is None:
            if not self.index_path.exists():
                raise TeacherCacheError(
                    f'no teacher-feature cache at {self.cache_dir} (index.json missing): run '
                    'tools/extract_teacher_features.py with this config first')
            self._index = json.loads(self.index_path.read_text())
            if self._index.get('version') != CACHE_VERSION:
                raise TeacherCacheError(f'{self.cache_dir}: cache version '
                                        f'{self._index.get("version")} != {CACHE_VERSION}')
        return self._index

    @property
    def key(self) -> dict:
        """The cache key (teacher cache_key + preprocessing)."""
        return self.index['key']

    def num_done(self) -> int:
        """Rows already written."""
        path = self.cache_dir / 'progress.json'
        return json.loads(path.read_text())['done'] if path.exists() else 0

    def __len__(self) -> int:
        return len(self.index['frame_ids'])

    def check_complete(self) -> None:
        """Raise unless every row has been computed."""
        done = self.num_done()
        if done < len(self):
            raise TeacherCacheError(
                f'teacher-feature cache {self.cache_dir} is incomplete ({done} of {len(self)} '
                'frames): run tools/extract_teacher_features.py again to resume it')

    def check_key(self, expected: dict) -> None:
        """Raise `TeacherCacheError` naming the cache and the first differing field."""
        diff = key_mismatch(self.key, expected)
        if diff is not None:
            name, have, want = diff
            raise TeacherCacheError(
                f'teacher-feature cache {self.cache_dir} does not match the config: {name!r} '
                f'is {have!r} in the cache but {want!r} in the config; re-run '
                'tools/extract_teacher_features.py for this teacher (or point the config '
                'at the right cache)')

    def _open(self) -> None:
        # Memory maps are (re)opened per process: dataloader workers fork after __init__.
        if self._arrays is not None and self._pid == os.getpid():
            return
        d = self.cache_dir
        self._arrays = dict(global_=np.load(d / 'global.npy', mmap_mode='r'),
                            valid=np.load(d / 'valid.npy', mmap_mode='r'))
        if self.index.get('tokens'):
            self._arrays['tokens'] = np.load(d / 'tokens.npy', mmap_mode='r')
        self._rows = {f: i for i, f in enumerate(self.index['frame_ids'])}
        self._pid = os.getpid()

    def row(self, frame_id: str) -> int:
        """Row of a frame; an unknown frame is an error naming the cache."""
        self._open()
        try:
            return self._rows[frame_id]
        except KeyError:
            raise TeacherCacheError(
                f'frame {frame_id!r} is not in the teacher-feature cache {self.cache_dir} '
                '(the cache was built from other info files)') from None

    def is_valid(self, frame_id: str) -> bool:
        """Whether the teacher could read this frame when the cache was built."""
        r = self.row(frame_id)  # opens the memory maps in this process
        return bool(self._arrays['valid'][r])

    def get(self, frame_id: str, tokens: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(global (D,), tokens (T, D) or None) as float32 copies."""
        r = self.row(frame_id)
        g = np.array(self._arrays['global_'][r], dtype=np.float32)
        t = None
        if tokens:
            if 'tokens' not in self._arrays:
                raise TeacherCacheError(f'teacher-feature cache {self.cache_dir} holds no '
                                        'tokens (re-extract with --tokens patch|prefix)')
            t = np.array(self._arrays['tokens'][r], dtype=np.float32)
        return g, t

    def __getstate__(self) -> dict:
        # Pickled into dataloader workers without open memory maps.
        state = dict(self.__dict__)
        state.update(_arrays=None, _rows=None, _pid=None)
        return state
