"""Picture size from the file header, before decoding (PNG, JPEG, WebP, BMP, GIF).

Why: a 100-byte PNG whose header claims 100 000 x 100 000 pixels makes the decoder try to
allocate 30 GB (``oom`` or a crash); the header says so in its first bytes, so the claim is
refused as ``image_invalid`` in microseconds. :data:`MIN_IMAGE_SIDE` is the one minimum the
code, the messages and docs/errors.md state.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from engine.errors import ImageError

#: smallest side the engine accepts (faces under ~256 px come out soft, but work)
MIN_IMAGE_SIDE = 16
#: largest picture decoded: 100 megapixels (a 12 000 x 8 000 camera file is 96)
MAX_IMAGE_PIXELS = 100_000_000


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) the header claims, or None when the format is not recognised here."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if chunk == b"VP8 " and len(head) >= 30:
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L" and len(head) >= 25:
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk JPEG markers to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def check_image_header(data: np.ndarray | bytes, path: Path) -> None:
    """``image_invalid`` when the header claims a picture too large (or empty) to decode."""
    head = bytes(data[:1 << 16]) if isinstance(data, (bytes, bytearray)) else data[:1 << 16].tobytes()
    size = header_size(head)
    if size is None:
        return  # other formats: the decoder's own limit (OpenCV: 2^30 pixels) applies
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageError(f"portrait image {path} claims {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); the engine "
                         f"reads at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels: scale it down first")
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageError(f"portrait image {path} is too small ({w}x{h}); the engine needs at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
