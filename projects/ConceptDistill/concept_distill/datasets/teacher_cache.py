"""On-disk teacher-feature cache: float16 memory-mapped arrays + a JSON index, no pickle.

Layout of a cache directory:

    index.json      key (teacher cache_key + image preprocessing), frame ids, array shapes,
                    `invalid`: {frame id: why} for rows whose image could not be read
    global.npy      (N, D) float16 global embeddings
    tokens.npy      (N, T, D) float16 token set (optional: patch or prefix tokens)
    valid.npy       (N,) uint8 row state: 0 = not computed yet, 1 = computed, 2 = the frame's
                    image could not be read (retried by the next extraction)
    digests.npy     (N, 32) uint8: per row, the quick and the full digest of the image file
                    the row was computed from (zeros for an invalid row)

A row's state is written after its features are flushed, so a killed run resumes at exactly
the rows still 0, whatever order or process wrote the others: extraction processes started
by torchrun each write their own rows of the one memory-mapped cache.

The digests bind the cache to its data: before training, every frame's quick digest (file
size + its first and last 4 KiB) is compared with the one recorded at extraction; the full
digest (all bytes) is compared on request.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CACHE_VERSION = 3
TODO, VALID, INVALID = 0, 1, 2  # row states in valid.npy
DIGEST_BYTES = 16  # per digest; a row holds the quick one, then the full one
DIGEST_SPAN = 4096  # bytes hashed at each end of a file by the quick digest
EXTRACT_TOOL = 'tools/extract_teacher_features.py'


class TeacherCacheError(RuntimeError):
    """A teacher-feature cache is missing, damaged, incomplete or does not match the config."""


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
    """Write JSON atomically (a kill leaves the old file or the new one, never half)."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _quick(size: int, head: bytes, tail: bytes) -> bytes:
    """The quick digest from a file's size, first span and last span."""
    h = hashlib.blake2b(size.to_bytes(8, 'little'), digest_size=DIGEST_BYTES)
    h.update(head)
    h.update(tail)
    return h.digest()


def quick_digest(path: str | os.PathLike) -> bytes:
    """Digest of a file's size and its first and last `DIGEST_SPAN` bytes (two small reads).

    A regenerated image of the same size still differs: JPEG entropy-coded data starts in the
    first span and ends in the last one.
    """
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(DIGEST_SPAN)
        f.seek(max(DIGEST_SPAN, size - DIGEST_SPAN))
        tail = f.read()
    return _quick(size, head, tail)


def full_digest(path: str | os.PathLike) -> bytes:
    """Digest of all of a file's bytes."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.digest()


def file_digests(path: str | os.PathLike) -> np.ndarray:
    """(32,) uint8: the quick digest then the full digest of a file, from one read."""
    data = Path(path).read_bytes()
    quick = _quick(len(data), data[:DIGEST_SPAN], data[max(DIGEST_SPAN, len(data) - DIGEST_SPAN):])
    full = hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()
    return np.frombuffer(quick + full, dtype=np.uint8)


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


def _check_npy(path: Path, shape: tuple[int, ...], dtype: str, damaged: str) -> None:
    """Raise `TeacherCacheError` unless `path` is a .npy of `shape`/`dtype` with all its bytes."""
    if not path.is_file():
        raise TeacherCacheError(f'{path} is missing: {damaged}')
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            have_shape, fortran, have_dtype = read(f)
            offset, size = f.tell(), os.fstat(f.fileno()).st_size
    except (OSError, ValueError) as err:
        raise TeacherCacheError(f'{path} is not a readable .npy file ({err}): {damaged}') from err
    if tuple(have_shape) != tuple(shape) or np.dtype(have_dtype) != np.dtype(dtype) or fortran:
        raise TeacherCacheError(f'{path} holds {np.dtype(have_dtype)} {tuple(have_shape)} but '
                                f'the index says {dtype} {tuple(shape)}: {damaged}')
    need = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size < need:
        raise TeacherCacheError(f'{path} is truncated ({size} bytes, {need} expected): '
                                f'{damaged}')


class TeacherFeatureCache:
    """Reader/writer of one cache directory (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        self.index_path = self.cache_dir / 'index.json'
        self._index: dict | None = None
        self._rows: dict[str, int] | None = None
        self._arrays: dict | None = None
        self._pid: int | None = None

    @property
    def _damaged(self) -> str:
        """The fix for a damaged cache, for error messages."""
        return (f'the teacher-feature cache {self.cache_dir} is damaged; delete that folder and '
                f'run {EXTRACT_TOOL} again')

    # ------------------------------------------------------------------ writing
    @classmethod
    def create_or_resume(cls, cache_dir: str | os.PathLike, key: dict, frame_ids: list[str],
                         global_dim: int, tokens_shape: tuple[int, int] | None = None,
                         tokens_name: str | None = None) -> tuple[TeacherFeatureCache, int]:
        """Open a cache for writing: (cache, rows already computed).

        An existing cache with the same key and frames resumes once its arrays are checked
        against the index (a damaged one is an error naming the file); one with another key
        or other frames is an error (delete it or choose another directory).
        """
        cache = cls(cache_dir)
        key = _plain(key)
        if cache.index_path.exists():
            index = cache.index
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
            cache.check_files()
            return cache, cache.num_done()
        cache.cache_dir.mkdir(parents=True, exist_ok=True)
        n = len(frame_ids)
        specs = [('global.npy', np.float16, (n, global_dim)), ('valid.npy', np.uint8, (n,)),
                 ('digests.npy', np.uint8, (n, 2 * DIGEST_BYTES))]
        tokens = None
        if tokens_shape is not None:
            specs.append(('tokens.npy', np.float16, (n, *tokens_shape)))
            tokens = dict(name=tokens_name, shape=[n, *tokens_shape])
        for name, dtype, shape in specs:
            np.lib.format.open_memmap(cache.cache_dir / name, mode='w+', dtype=dtype,
                                      shape=shape)
        # The index is written last: its presence means the arrays exist.
        _write_json(cache.index_path, dict(
            version=CACHE_VERSION, key=key, frame_ids=list(frame_ids),
            global_shape=[n, global_dim], dtype='float16', tokens=tokens, invalid={}))
        return cache, 0

    def write_rows(self, rows: int | Iterable[int], global_feats: np.ndarray, valid: np.ndarray,
                   tokens: np.ndarray | None = None, digests: np.ndarray | None = None) -> None:
        """Store the given rows (a start row, or row indices; any order, any process), then
        mark them computed (`valid` true) or invalid."""
        idx = (np.arange(rows, rows + len(global_feats)) if isinstance(rows, (int, np.integer))
               else np.asarray(list(rows), dtype=np.int64))
        d = self.cache_dir
        for name, values, dtype in (('global.npy', global_feats, np.float16),
                                    ('tokens.npy', tokens, np.float16),
                                    ('digests.npy', digests, np.uint8)):
            if values is None:
                continue
            arr = np.load(d / name, mmap_mode='r+')
            arr[idx] = np.asarray(values).astype(dtype)
            arr.flush()
            del arr
        # Only after the features are flushed: a kill before this recomputes the rows.
        state = np.load(d / 'valid.npy', mmap_mode='r+')
        state[idx] = np.where(np.asarray(valid, dtype=bool), VALID, INVALID).astype(np.uint8)
        state.flush()
        del state

    def set_invalid(self, reasons: dict[str, str]) -> None:
        """Record in the index which frames are invalid and why (replaces the previous list)."""
        index = dict(self.index, invalid=dict(sorted(reasons.items())))
        _write_json(self.index_path, index)
        self._index = index

    def rows_to_redo(self, image_paths: list[str]) -> dict[int, str]:
        """Rows already written that must be computed again: {row: 'invalid' | 'changed'}.

        Invalid rows are retried (a restored image becomes valid); a valid row whose image's
        quick digest no longer matches (or whose image is gone) is recomputed.
        """
        self._open(reopen=True)
        valid, digests = self._arrays['valid'], self._arrays['digests']
        redo = {}
        for row in np.flatnonzero(np.asarray(valid[:len(image_paths)]) != TODO).tolist():
            if valid[row] != VALID:
                redo[row] = 'invalid'
                continue
            try:
                same = quick_digest(image_paths[row]) == bytes(digests[row, :DIGEST_BYTES])
            except OSError:
                same = False
            if not same:
                redo[row] = 'changed'
        return redo

    # ------------------------------------------------------------------ reading
    @property
    def index(self) -> dict:
        """The parsed index.json."""
        if self._index is None:
            if not self.index_path.exists():
                raise TeacherCacheError(
                    f'no teacher-feature cache at {self.cache_dir} (index.json missing; '
                    f'resolved: {self.cache_dir.resolve()}): run {EXTRACT_TOOL} with this '
                    'config first, or fix cache_dir (a relative path is taken from the '
                    'working directory)')
            try:
                index = json.loads(self.index_path.read_text())
            except (OSError, ValueError) as err:
                raise TeacherCacheError(f'{self.index_path} is not readable JSON ({err}): '
                                        f'{self._damaged}') from err
            if index.get('version') != CACHE_VERSION:
                raise TeacherCacheError(
                    f'{self.cache_dir}: cache version {index.get("version")} != '
                    f'{CACHE_VERSION} (made by an older version of this code); delete it and '
                    f'run {EXTRACT_TOOL} again')
            self._index = index
        return self._index

    @property
    def key(self) -> dict:
        """The cache key (teacher cache_key + preprocessing)."""
        return self.index['key']

    def rows_todo(self) -> np.ndarray:
        """Rows not computed yet (state 0), ascending."""
        _check_npy(self.cache_dir / 'valid.npy', (len(self),), 'uint8', self._damaged)
        return np.flatnonzero(np.load(self.cache_dir / 'valid.npy', mmap_mode='r') == TODO)

    def num_done(self) -> int:
        """Rows already written (computed or found invalid)."""
        return len(self) - len(self.rows_todo())

    def __len__(self) -> int:
        return len(self.index['frame_ids'])

    def _array_specs(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(file, shape, dtype) of every array the index promises."""
        n = len(self)
        specs = [('global.npy', tuple(self.index['global_shape']), 'float16'),
                 ('valid.npy', (n,), 'uint8'), ('digests.npy', (n, 2 * DIGEST_BYTES), 'uint8')]
        if self.index.get('tokens'):
            specs.append(('tokens.npy', tuple(self.index['tokens']['shape']), 'float16'))
        return specs

    def check_files(self) -> None:
        """Raise `TeacherCacheError` naming the first array file that is missing, unreadable,
        of another shape or shorter than the index says (a few stats and header reads)."""
        for name, shape, dtype in self._array_specs():
            _check_npy(self.cache_dir / name, shape, dtype, self._damaged)

    def check_complete(self) -> None:
        """Raise unless the files are sound and every row has been computed."""
        self.check_files()
        done = self.num_done()
        if done < len(self):
            raise TeacherCacheError(
                f'teacher-feature cache {self.cache_dir} is incomplete ({done} of {len(self)} '
                f'frames): run {EXTRACT_TOOL} again to resume it')

    def check_key(self, expected: dict) -> None:
        """Raise `TeacherCacheError` naming the cache and the first differing field."""
        diff = key_mismatch(self.key, expected)
        if diff is not None:
            name, have, want = diff
            raise TeacherCacheError(
                f'teacher-feature cache {self.cache_dir} does not match the config: {name!r} '
                f'is {have!r} in the cache but {want!r} in the config; re-run '
                f'{EXTRACT_TOOL} for this teacher (or point the config at the right cache)')

    def check_frames(self, frames: Iterable[tuple[str, str]], full: bool = False) -> dict:
        """Check that the cache was built from these (frame id, image path) pairs' images.

        Every frame must be in the cache, and each valid row's recorded digest must match the
        image file now: the quick digest (size + both ends, two small reads a frame) or, with
        `full`, the digest of all bytes. The first frame that differs is a `TeacherCacheError`
        naming the cache, the frame and its file. Missing images are left to the pipeline
        (it counts and skips them) unless none is found at all. Returns what was checked.
        """
        start = time.perf_counter()
        self._open()
        valid, digests = self._arrays['valid'], self._arrays['digests']
        part = slice(DIGEST_BYTES, None) if full else slice(0, DIGEST_BYTES)
        digest = full_digest if full else quick_digest
        checked = invalid = 0
        missing: list[str] = []
        for frame_id, path in frames:
            row = self.row(frame_id)
            if valid[row] != VALID:
                invalid += 1  # skipped by LoadTeacherFeatures; the extraction retries it
                continue
            try:
                same = digest(path) == bytes(digests[row, part])
            except FileNotFoundError:
                missing.append(path)
                continue
            except OSError as err:
                raise TeacherCacheError(f'image {path} of frame {frame_id!r} cannot be read '
                                        f'({err})') from err
            checked += 1
            if not same:
                raise TeacherCacheError(
                    f'teacher-feature cache {self.cache_dir} was built from other data: the '
                    f'image of frame {frame_id!r} ({path}) is not the one the cache was '
                    f'computed from (the first differing frame); run {EXTRACT_TOOL} again (it '
                    'recomputes the frames whose images changed), or point the config at the '
                    "cache of this data")
        if missing and not checked:
            raise TeacherCacheError(
                f'none of the {len(missing)} images the teacher-feature cache {self.cache_dir} '
                f'was checked against exists, e.g. {missing[0]} (resolved: '
                f'{Path(missing[0]).resolve()}); fix data_root (a relative path is taken from '
                'the working directory)')
        return dict(frames=checked, invalid=invalid, missing=len(missing),
                    first_missing=missing[0] if missing else None,
                    mode='full' if full else 'quick',
                    seconds=round(time.perf_counter() - start, 3))

    def _open(self, reopen: bool = False) -> None:
        """Memory-map the arrays in this process (after checking their sizes)."""
        # Memory maps are (re)opened per process: dataloader workers fork after __init__.
        if self._arrays is not None and self._pid == os.getpid() and not reopen:
            return
        self.check_files()
        d = self.cache_dir
        self._arrays = dict(global_=np.load(d / 'global.npy', mmap_mode='r'),
                            valid=np.load(d / 'valid.npy', mmap_mode='r'),
                            digests=np.load(d / 'digests.npy', mmap_mode='r'))
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
                f'(the cache was built from other info files); run {EXTRACT_TOOL} for this '
                'config into another --cache-dir') from None

    def is_valid(self, frame_id: str) -> bool:
        """Whether the teacher could read this frame when the cache was built."""
        r = self.row(frame_id)  # opens the memory maps in this process
        return bool(self._arrays['valid'][r] == VALID)

    def invalid_reason(self, frame_id: str) -> str:
        """Why a frame's row is invalid, as recorded at extraction."""
        return self.index.get('invalid', {}).get(frame_id, 'its image could not be read')

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
