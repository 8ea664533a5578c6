"""Reader and writer of ScanNet's `.sens` RGB-D stream files (format version 4).

Layout (little-endian): header = version uint32, sensor-name length uint64 + bytes, four
4x4 float32 matrices (colour intrinsics, colour extrinsics, depth intrinsics, depth
extrinsics), colour and depth compression types int32, colour width/height and depth
width/height uint32, depth shift float32, frame count uint64; then per frame:
camera-to-world 4x4 float32, colour and depth timestamps uint64, colour and depth byte
counts uint64, the colour bytes (JPEG) and the depth bytes (zlib-compressed uint16).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: 'unknown', 0: 'raw', 1: 'png', 2: 'jpeg'}
DEPTH_COMPRESSION = {-1: 'unknown', 0: 'raw_ushort', 1: 'zlib_ushort', 2: 'occi_ushort'}


@dataclass
class SensHeader:
    """Stream-level fields of a .sens file."""

    color_intrinsic: np.ndarray  # 4x4
    depth_intrinsic: np.ndarray  # 4x4
    color_size: tuple[int, int]  # (height, width)
    depth_size: tuple[int, int]  # (height, width)
    depth_shift: float = 1000.0
    sensor_name: str = 'StructureSensor'
    color_extrinsic: np.ndarray = field(default_factory=lambda: np.eye(4))
    depth_extrinsic: np.ndarray = field(default_factory=lambda: np.eye(4))
    color_compression: str = 'jpeg'
    depth_compression: str = 'zlib_ushort'
    num_frames: int = 0


@dataclass
class SensFrame:
    """One RGB-D frame; images stay encoded until asked for."""

    index: int
    camera_to_world: np.ndarray  # 4x4 float32 (may hold -inf/nan: ScanNet's failed poses)
    color_bytes: bytes
    depth_bytes: bytes
    timestamp_color: int = 0
    timestamp_depth: int = 0

    def color(self, header: SensHeader) -> np.ndarray:
        """Decoded (H, W, 3) uint8 RGB."""
        if header.color_compression == 'raw':
            h, w = header.color_size
            return np.frombuffer(self.color_bytes, np.uint8).reshape(h, w, 3)
        with Image.open(BytesIO(self.color_bytes)) as im:
            return np.asarray(im.convert('RGB'))

    def depth(self, header: SensHeader) -> np.ndarray:
        """Decoded (H, W) uint16 depth (units of 1 / depth_shift metres)."""
        if header.depth_compression == 'zlib_ushort':
            raw = zlib.decompress(self.depth_bytes)
        elif header.depth_compression == 'raw_ushort':
            raw = self.depth_bytes
        else:
            raise ValueError(f'unsupported depth compression {header.depth_compression!r}')
        h, w = header.depth_size
        return np.frombuffer(raw, np.uint16).reshape(h, w)


class SensFormatError(ValueError):
    """A .sens file is truncated or not a version-4 stream."""


def _read(f, fmt: str, path) -> tuple:
    size = struct.calcsize(fmt)
    buf = f.read(size)
    if len(buf) != size:
        raise SensFormatError(f'{path}: truncated .sens file (wanted {size} bytes at offset '
                              f'{f.tell() - len(buf)})')
    return struct.unpack(fmt, buf)


def _mat(f, path) -> np.ndarray:
    return np.asarray(_read(f, '<16f', path), dtype=np.float32).reshape(4, 4)


def read_sens_header(f, path='<stream>') -> SensHeader:
    """Parse the header from an open binary file positioned at its start."""
    (version,) = _read(f, '<I', path)
    if version != SENS_VERSION:
        raise SensFormatError(f'{path}: .sens version {version}, expected {SENS_VERSION}')
    (strlen,) = _read(f, '<Q', path)
    name = f.read(strlen).decode('utf-8', errors='replace')
    ci, ce, di, de = (_mat(f, path) for _ in range(4))
    cc, dc = _read(f, '<ii', path)
    cw, ch, dw, dh = _read(f, '<4I', path)
    (shift,) = _read(f, '<f', path)
    (n,) = _read(f, '<Q', path)
    return SensHeader(ci, di, (ch, cw), (dh, dw), float(shift), name, ce, de,
                      COLOR_COMPRESSION.get(cc, 'unknown'), DEPTH_COMPRESSION.get(dc, 'unknown'),
                      int(n))


def iter_sens_frames(path: str | Path, frame_stride: int = 1,
                     max_frames: int | None = None) -> tuple[SensHeader, Iterator[SensFrame]]:
    """(header, iterator over every `frame_stride`-th frame); skipped frames are seeked over."""
    path = Path(path)
    with open(path, 'rb') as f:
        header = read_sens_header(f, path)

    def frames() -> Iterator[SensFrame]:
        with open(path, 'rb') as f:
            read_sens_header(f, path)
            kept = 0
            for i in range(header.num_frames):
                pose = _mat(f, path)
                tc, td, nc, nd = _read(f, '<4Q', path)
                if i % frame_stride:
                    f.seek(nc + nd, 1)
                    continue
                color, depth = f.read(nc), f.read(nd)
                if len(color) != nc or len(depth) != nd:
                    raise SensFormatError(f'{path}: truncated .sens file in frame {i}')
                yield SensFrame(i, pose, color, depth, tc, td)
                kept += 1
                if max_frames is not None and kept >= max_frames:
                    return

    return header, frames()


def encode_frame(rgb: np.ndarray, depth_u16: np.ndarray, camera_to_world: np.ndarray,
                 index: int, jpeg_quality: int = 95) -> SensFrame:
    """A frame from arrays: JPEG colour, zlib depth."""
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format='JPEG', quality=jpeg_quality)
    depth = zlib.compress(np.ascontiguousarray(depth_u16, dtype=np.uint16).tobytes())
    return SensFrame(index, np.asarray(camera_to_world, np.float32), buf.getvalue(), depth,
                     timestamp_color=index * 33333, timestamp_depth=index * 33333)


def write_sens(path: str | Path, header: SensHeader, frames: Iterable[SensFrame]) -> None:
    """Write a version-4 .sens file (header.num_frames is set from `frames`)."""
    frames = list(frames)
    inv_c = {v: k for k, v in COLOR_COMPRESSION.items()}
    inv_d = {v: k for k, v in DEPTH_COMPRESSION.items()}
    name = header.sensor_name.encode()
    with open(path, 'wb') as f:
        f.write(struct.pack('<IQ', SENS_VERSION, len(name)) + name)
        for m in (header.color_intrinsic, header.color_extrinsic, header.depth_intrinsic,
                  header.depth_extrinsic):
            f.write(np.asarray(m, dtype='<f4').reshape(16).tobytes())
        f.write(struct.pack('<ii', inv_c[header.color_compression],
                            inv_d[header.depth_compression]))
        f.write(struct.pack('<4I', header.color_size[1], header.color_size[0],
                            header.depth_size[1], header.depth_size[0]))
        f.write(struct.pack('<fQ', header.depth_shift, len(frames)))
        for fr in frames:
            f.write(np.asarray(fr.camera_to_world, dtype='<f4').reshape(16).tobytes())
            f.write(struct.pack('<4Q', fr.timestamp_color, fr.timestamp_depth,
                                len(fr.color_bytes), len(fr.depth_bytes)))
            f.write(fr.color_bytes)
            f.write(fr.depth_bytes)
