"""On-disk precomputed frame pairs: which points of its scene a frame sees, computed once.

One file per frame, next to its image (`<frame>.pairs` beside `<frame>.jpg`), written by
`tools/create_data.py pairs` (`converters/frame_pairing.py`) and read by the paired pipeline
(`LoadScenePoints(precomputed_pairs=True)` + `FrustumPointPairing`, see
`transforms/load_precomputed_pairs.py`). No pickle:

    8 bytes   magic b'CDPAIRS1'
    4 bytes   header length L, uint32 little-endian
    L bytes   header, UTF-8 JSON: the pairing parameters, the frame's projection matrices,
              image size and depth scale, the scene file's point count and floor height
    N/8 bytes visible-point bitmask over the scene's N points (np.packbits, big bit order)

Pixel coordinates are not stored: the pipeline projects the (few thousand) points it keeps
with the frame's current projection, which gives exactly the online path's float32 values and
follows any resize or crop. The bitmask costs N/8 bytes (12.5 KB for a 100k-point scene),
less than any per-point list once a frame sees more than 1/32 of its scene.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from concept_distill.datasets.frustum_pairing import PairedDataError

MAGIC = b'CDPAIRS1'
FORMAT_VERSION = 1
PAIRS_SUFFIX = '.pairs'
# Results key of an opened frame's pairs, from LoadScenePoints to FrustumPointPairing.
PAIRS_KEY = 'precomputed_pairs'
_PREFIX = struct.Struct('<8sI')


class PrecomputedPairsError(ValueError):
    """Precomputed pairs that do not match the pipeline or the infos (names file and field).

    Not a `PairedDataError`: a stale or mismatched preparation is a set-up error to fix, not
    a bad frame to skip.
    """


def pairs_path(img_path: str) -> str:
    """The pairs file of the frame whose image is `img_path` (same folder, same stem)."""
    return os.path.splitext(img_path)[0] + PAIRS_SUFFIX


def pairing_params(depth_range: tuple[float, float], occlusion_test: bool,
                   occlusion_tol: float, keep_missing_depth: bool) -> dict:
    """The parameters that decide a frame's pairs, in the form stored in the header."""
    return dict(depth_range=[float(depth_range[0]), float(depth_range[1])],
                occlusion_test=bool(occlusion_test), occlusion_tol=float(occlusion_tol),
                keep_missing_depth=bool(keep_missing_depth))


def params_mismatch(stored: dict, expected: dict) -> tuple[str, object, object] | None:
    """First pairing parameter that differs: (name, stored, expected), or None.

    The occlusion tolerance and the missing-depth rule only matter with an occlusion test.
    """
    names = ['occlusion_test', 'depth_range']
    if stored.get('occlusion_test') and expected.get('occlusion_test'):
        names += ['occlusion_tol', 'keep_missing_depth']
    for name in names:
        if stored.get(name) != expected.get(name):
            return name, stored.get(name), expected.get(name)
    return None


def matrix_differs(stored, current) -> bool:
    """Whether two projection matrices (or None) differ beyond float round-off."""
    if stored is None or current is None:
        return (stored is None) != (current is None)
    a, b = np.asarray(stored, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if a.shape != b.shape:
        return True
    # One max over |a - b| (np.allclose costs ~10x more, and this runs once per sample).
    return float(np.abs(a - b).max()) > 1e-9 * max(float(np.abs(b).max()), 1.0)


def encode_visible(index: np.ndarray, num_points: int) -> bytes:
    """Bitmask bytes of the (sorted, unique) visible indices of an `num_points`-point scene."""
    mask = np.zeros(num_points, dtype=bool)
    mask[index] = True
    return np.packbits(mask).tobytes()


def decode_visible(payload: bytes | np.ndarray, num_points: int) -> np.ndarray:
    """Sorted visible indices (intp) from the bitmask."""
    bits = np.frombuffer(payload, dtype=np.uint8)
    return np.nonzero(np.unpackbits(bits, count=num_points).view(bool))[0]


def write_frame_pairs(path: str, header: dict, index: np.ndarray) -> int:
    """Write a frame's pairs atomically (a killed run leaves no partial file); bytes written."""
    num_points = int(header['scene']['num_points'])
    header = dict(header, format='concept_distill.frame_pairs', version=FORMAT_VERSION,
                  num_visible=int(len(index)))
    text = json.dumps(header, sort_keys=True).encode()
    data = _PREFIX.pack(MAGIC, len(text)) + text + encode_visible(index, num_points)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def _split(path: str, data: bytes) -> tuple[dict, bytes]:
    """(header, payload) of a pairs file's bytes; a corrupt file raises PairedDataError."""
    try:
        magic, length = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f'not a pairs file (magic {magic!r})')
        header = json.loads(data[_PREFIX.size:_PREFIX.size + length])
        if header.get('version') != FORMAT_VERSION:
            raise ValueError(f"format version {header.get('version')}, expected "
                             f'{FORMAT_VERSION}')
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise PairedDataError(f'corrupt pairs file {path}: {err}; re-run '
                              '`tools/create_data.py pairs`', path, 'corrupt_pairs') from err
    return header, data[_PREFIX.size + length:]


def read_frame_pairs(path: str) -> tuple[dict, np.ndarray]:
    """(header, sorted visible indices); FileNotFoundError when the frame has none."""
    with open(path, 'rb') as f:
        data = f.read()
    header, payload = _split(path, data)
    n = int(header['scene']['num_points'])
    if len(payload) != (n + 7) // 8:
        raise PairedDataError(f'corrupt pairs file {path}: {len(payload)} bitmask bytes for '
                              f'{n} scene points; re-run `tools/create_data.py pairs`', path,
                              'corrupt_pairs')
    visible = decode_visible(payload, n)
    if len(visible) != header['num_visible']:
        raise PairedDataError(f"corrupt pairs file {path}: {len(visible)} visible points, the "
                              f"header says {header['num_visible']}", path, 'corrupt_pairs')
    return header, visible


def read_header(path: str) -> dict | None:
    """The header of an existing, readable pairs file (None if missing or corrupt)."""
    try:
        with open(path, 'rb') as f:
            prefix = f.read(_PREFIX.size)
            _, length = _PREFIX.unpack(prefix)
            header, _ = _split(path, prefix + f.read(length))
        return header
    except (OSError, struct.error, PairedDataError):
        return None
