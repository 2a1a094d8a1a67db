"""Lazy, typed reading of ``.npz`` members (motion files; the template uses the same checks).

Why not ``np.load(...)[key]`` for every key: it inflates every member, so a 4 MB file with one
unused key that inflates to 4 GiB took 15-19 s and 4.2 GB; a string ``schema_version``, an
array ``fps`` or a damaged header ended ``internal`` or ``oom``. Here a member is opened only
when asked for, its ``.npy`` header (dtype, shape) is checked against what the schema expects
and against the member's stored size, and only then is its data read, into exactly that many
bytes. Every failure is a :class:`~engine.motion.npz.MotionFileError` naming the file and key.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the largest text member read (controls JSON as numpy's 4-byte unicode)
MAX_TEXT_BYTES = 256 * 1024 * 1024
#: the largest numeric member read: 10 hours of (N, 21, 3) at 25 fps in float64
MAX_ITEMS = 900_000 * 64
#: no member of a real motion file is larger (10 hours of coef in float64 is ~0.5 GiB)
MAX_MEMBER_BYTES = 1 << 30
#: deflate cannot shrink data more than ~1032:1; a member claiming more came from a crafted archive
MAX_DEFLATE_RATIO = 1100


@dataclass(frozen=True)
class MemberSpec:
    """What one member must be: numpy dtype kinds, shape (None = any length on that axis; None
    as the whole shape = any), and whether it is returned as a Python scalar."""

    kinds: str
    shape: tuple[int | None, ...] | None
    what: str
    scalar: bool = False
    max_items: int = MAX_ITEMS

    @classmethod
    def text(cls) -> "MemberSpec":
        return cls("U", (), "text", scalar=True)

    @classmethod
    def integer(cls) -> "MemberSpec":
        return cls("iu", (), "one integer", scalar=True)

    @classmethod
    def number(cls) -> "MemberSpec":
        return cls("fiu", (), "one number", scalar=True)

    @classmethod
    def flag(cls) -> "MemberSpec":
        return cls("biu", (), "true/false", scalar=True)

    @classmethod
    def numbers(cls, shape: tuple[int | None, ...], max_items: int = MAX_ITEMS) -> "MemberSpec":
        return cls("fiu", shape, "numbers", max_items=max_items)


class MotionFileError(ValueError):
    """The file is not a valid motion file (message says why); engine.motion.npz re-exports it."""


#: the longest audio a motion file can describe (10 hours): bounds the recorded times
MAX_AUDIO_S = 36_000.0
#: what a job could have recorded (engine/jobs.py SEED_MAX, STEPS_MAX, CFG_MAX; a test keeps them equal)
SEED_MAX, STEPS_MAX, CFG_MAX = 2**63 - 1, 1000, 50.0


def _meta_number(meta: dict[str, Any], key: str, lo: float, hi: float, whole: bool = False) -> float | None:
    """``meta[key]`` finite, within [lo, hi] and (``whole``) a whole number, or MotionFileError."""
    if key not in meta:
        return None
    value = meta[key]
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise MotionFileError(f"{key} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi or (whole and f != math.floor(f)):
        kind = "a whole number" if whole else "a finite number"
        raise MotionFileError(f"{key} must be {kind} between {lo:g} and {hi:g}, got {value!r}")
    return f


def check_motion_meta(meta: dict[str, Any], n_frames: int, fps: float) -> None:
    """The recorded numbers of a motion file, finite and in range, for every reader (engine and
    add-on). ``audio_offset_s`` must leave frames to show (-1e30 exported 0 frames, -1e9 keyed every
    frame as the last), ``audio_duration_s`` must fit the frames (4e5 s resampled to millions of
    frames), seed/steps must be whole numbers a job could have used (1e300, NaN, 2**40)."""
    length = n_frames / fps
    offset = _meta_number(meta, "audio_offset_s", -length, MAX_AUDIO_S) or 0.0
    if offset <= -length:
        raise MotionFileError(f"audio_offset_s {offset:g} s starts the audio after the last frame ({length:g} s)")
    _meta_number(meta, "audio_duration_s", 0.0, min(MAX_AUDIO_S, length + max(offset, 0.0) + 60.0))
    _meta_number(meta, "seed", 0, SEED_MAX, whole=True)
    _meta_number(meta, "steps", 0, STEPS_MAX, whole=True)
    _meta_number(meta, "cfg_scale", 0.0, CFG_MAX)


def _error(message: str) -> Exception:
    return MotionFileError(message)


class NpzReader:
    """An open ``.npz`` archive whose members are read one at a time, checked first."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise _error(f"{self.path} is not a JoyVASA motion file (not a readable .npz archive of plain "
                         f"arrays: {str(exc).strip() or type(exc).__name__})") from None
        self._members = {i.filename[:-4]: i for i in self._zip.infolist() if i.filename.endswith(".npy")}
        self._headers: dict[str, tuple[tuple[int, ...], bool, np.dtype, int]] = {}

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def _header(self, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        if key not in self._headers:
            try:
                with self._zip.open(self._members[key]) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy format version {version}")
                    offset = fh.tell()
            except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile, RuntimeError) as exc:
                raise _error(f"{self.path}: the header of {key!r} is damaged "
                             f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})") from None
            self._headers[key] = (tuple(shape), bool(fortran), dtype, offset)
        return self._headers[key]

    def shape(self, key: str) -> tuple[int, ...] | None:
        return self._header(key)[0] if key in self else None

    def get(self, key: str, spec: MemberSpec) -> Any:
        """The member ``key`` checked against ``spec`` (KeyError-free: the caller tests ``in``)."""
        if key not in self:
            raise _error(f"{self.path} lacks the key {key!r}")
        shape, fortran, dtype, offset = self._header(key)
        if dtype.hasobject or dtype.kind not in spec.kinds:
            raise _error(f"{self.path}: {key!r} must be {spec.what}, but is stored as {dtype.str} "
                         f"{'(objects need pickle, never loaded)' if dtype.hasobject else ''}".rstrip())
        if spec.shape is not None and (len(shape) != len(spec.shape)
                                       or any(e is not None and e != s for e, s in zip(spec.shape, shape))):
            want = "a single value" if spec.shape == () else str(tuple("N" if e is None else e for e in spec.shape))
            raise _error(f"{self.path}: {key!r} has shape {shape}, expected {want}")
        items = math.prod(shape)
        limit = MAX_TEXT_BYTES // max(dtype.itemsize, 1) if dtype.kind == "U" else spec.max_items
        if items > limit:
            raise _error(f"{self.path}: {key!r} claims {items} values, far more than a motion file holds")
        nbytes = items * dtype.itemsize
        info = self._members[key]
        stored_ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
        if nbytes > MAX_MEMBER_BYTES or info.file_size > stored_ratio * max(info.compress_size, 1):
            raise _error(f"{self.path}: {key!r} claims {max(nbytes, info.file_size)} bytes from "
                         f"{info.compress_size} stored bytes, more than it can hold (a crafted or damaged archive)")
        if offset + nbytes != self._members[key].file_size:
            raise _error(f"{self.path}: {key!r} is damaged (its header promises {nbytes} bytes of data, the "
                         f"archive holds {self._members[key].file_size - offset})")
        buf = bytearray(nbytes)
        try:
            with self._zip.open(self._members[key]) as fh:
                fh.seek(offset)
                got = fh.readinto(buf) if nbytes else 0
        except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError) as exc:
            raise _error(f"{self.path}: {key!r} cannot be read ({exc})") from None
        if got != nbytes:
            raise _error(f"{self.path}: {key!r} is truncated ({got} of {nbytes} bytes)")
        arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        if spec.scalar:
            return str(arr) if dtype.kind == "U" else arr.item()
        return arr
