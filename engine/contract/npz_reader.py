"""The motion file, schema ``joyvasa.motion`` 1.1: what it holds, the lazy typed reader, the validator.

A contract file (engine/contract/__init__.py): the engine writes motion files (engine/motion/npz.py)
and reads them here; the add-on reads them here too (its verbatim copy), so both sides accept
and refuse the same files.

Readable with ``np.load(path, allow_pickle=False)``: no object arrays; strings are 0-d unicode
arrays. Frame ``i`` is at time ``i / fps`` seconds of the input audio (upstream convention: the
generated sequence starts with 2 frames of prepended silence, see ``audio_offset_s``).

=====================  =================  ===================================================
key                    dtype, shape       meaning
=====================  =================  ===================================================
schema                 <U, ()             "joyvasa.motion"
schema_version         int32, ()          1 (readers accept the same major, ignore unknown keys)
schema_minor           int32, ()          1 (absent in 1.0 files)
fps                    float32, ()        frames per second of every per-frame array (25 upstream)
n_frames               int32, ()          N
exp                    float32 (N,21,3)   expression offsets of the 21 implicit keypoints
scale                  float32 (N,)       keypoint scale
t                      float32 (N,3)      translation (t_z is zeroed at render time, as upstream)
pitch, yaw, roll       float32 (N,)       head pose in degrees (LivePortrait convention)
R                      float32 (N,3,3)    rotation from pitch/yaw/roll, row-vector convention
coef                   float32 (N,C)      raw normalised model output (C = 70 or 73); at the
                                          model's own fps (25) even if fps differs (resampled)
smoothed               bool, ()           EMA smoothing applied to scale/t/pitch/yaw/roll
audio_offset_s         float32, ()        audio time of frame 0 (0.0: frames already aligned)
audio_sha256           <U64, ()           hash of the 16 kHz mono float32 PCM used
audio_duration_s       float32, ()        duration of the input audio (before silence pads)
checkpoint_sha256      <U64, ()           hash of the motion-generator file ("" if unknown)
pe_variant             <U, ()             "head" or "legacy" positional encoding
sampler                <U, ()             "ancestral" | "ddim" | "dpmpp_2m"
steps                  int32, ()          denoising steps per window
cfg_scale              float32, ()        classifier-free guidance scale
cfg_mode               <U, ()             "incremental" | "independent"
seed                   int64, ()          seed of the torch generator
engine_version         <U, ()             engine version that wrote the file
---------------------  -----------------  --- added in 1.1 (all optional) -------------------
vad_db                 float32 (N,)       voice level per frame, dB below the clip's loud
                                          level (engine/motion/edit.py voice_level_db)
raw_exp, raw_pitch,    as exp, pitch,     the motion as sampled, before the controls; present
raw_yaw, raw_roll,     yaw, roll, t,      only when controls changed something (a file without
raw_t, raw_scale,      scale, R           them is its own raw motion). ``engine edit``
raw_R                                     re-applies new controls to these
controls               <U, ()             the controls used, canonical JSON (engine/motion/
                                          controls.py); absent = none
=====================  =================  ===================================================

The edited arrays (exp ... R) are what every consumer reads. Relative consumers (the
renderer, the add-on's "First Frame" neutral) measure motion against the *raw* frame 0
(``raw_*[0]``, = frame 0 when there are no raw arrays), so constant offsets stay visible.

Invariants (``validate``): N >= 1 and the same everywhere, finite values within
:data:`PLAUSIBLE_ABS_MAX`, 1 <= fps <= 120, R orthonormal to 1e-4, coef (M, >= 70); 1.1 keys,
when present: every raw_* with the shape of its edited key, vad_db (N,).

Reading: Why not ``np.load(...)[key]`` for every key: it inflates every member, so a 4 MB file with one
unused key that inflates to 4 GiB took 15-19 s and 4.2 GB; a string ``schema_version``, an
array ``fps`` or a damaged header ended ``internal`` or ``oom``. Here a member is opened only
when asked for, its ``.npy`` header (dtype, shape) is checked against what the schema expects
and against the member's stored size, and only then is its data read, into exactly that many
bytes. Every failure is a :class:`MotionFileError` naming the file and key.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protocol import JSONLimitError, loads_limited

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
    """The file is not a valid motion file (the message says why)."""


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


# -- the motion file ---------------------------------------------------------------------------
SCHEMA = "joyvasa.motion"
SCHEMA_VERSION = 1
SCHEMA_MINOR = 1
N_KP = 21
RAW_KEYS = ("exp", "pitch", "yaw", "roll", "t", "scale", "R")

PER_FRAME_KEYS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R", "coef")


#: Largest plausible |value| per array: ~100x what the model produces (exp ~0.1, scale ~2, t ~1,
#: pose ~±90 degrees). Beyond that the file is broken or hand-edited and would render garbage.
PLAUSIBLE_ABS_MAX = {"exp": 10.0, "scale": 100.0, "t": 100.0, "pitch": 720.0, "yaw": 720.0, "roll": 720.0}
FPS_RANGE = (1.0, 120.0)
#: most frames a motion file may hold: 10 hours at 25 fps (a header claiming more is damaged)
MAX_FRAMES = 900_000


@dataclass
class MotionData:
    fps: float
    exp: np.ndarray      # (N,21,3)
    scale: np.ndarray    # (N,)
    t: np.ndarray        # (N,3)
    pitch: np.ndarray    # (N,) degrees
    yaw: np.ndarray      # (N,)
    roll: np.ndarray     # (N,)
    R: np.ndarray        # (N,3,3)
    coef: np.ndarray     # (N,C)
    smoothed: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, np.ndarray] | None = None    # RAW_KEYS before the controls (None: these arrays are raw)
    vad_db: np.ndarray | None = None            # (N,) voice level per frame
    controls: str = ""                          # canonical JSON of the controls used ("" = none)
    schema_minor: int = SCHEMA_MINOR            # as read from the file (0: a 1.0 file); written: SCHEMA_MINOR

    @property
    def n_frames(self) -> int:
        return int(self.exp.shape[0])

    def raw_view(self) -> "MotionData":
        """The motion before the controls (itself when it has no raw arrays)."""
        if self.raw is None:
            return self
        from dataclasses import replace

        r = self.raw
        return replace(self, exp=r["exp"], pitch=r["pitch"], yaw=r["yaw"], roll=r["roll"], t=r["t"],
                       scale=r["scale"], R=r["R"], raw=None, controls="")


META_DEFAULTS: dict[str, Any] = {
    "audio_offset_s": np.float32(0.0),
    "audio_sha256": "",
    "audio_duration_s": np.float32(0.0),
    "checkpoint_sha256": "",
    "pe_variant": "head",
    "sampler": "ancestral",
    "steps": np.int32(0),
    "cfg_scale": np.float32(0.0),
    "cfg_mode": "incremental",
    "seed": np.int64(0),
    "engine_version": "",
    "motion_dtype": "float32",  # audio encoder + DiT; bfloat16: engine.device.select_motion_precision's fast path
}
META_TYPES = {k: (np.str_ if isinstance(v, str) else type(v)) for k, v in META_DEFAULTS.items()}


def validate(m: MotionData) -> None:
    n = m.n_frames
    if not (np.isfinite(m.fps) and FPS_RANGE[0] <= m.fps <= FPS_RANGE[1]):
        raise MotionFileError(f"fps must be between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g}, got {m.fps}")
    if n < 1:
        raise MotionFileError("the motion has no frames")
    shapes = {"exp": (n, N_KP, 3), "scale": (n,), "t": (n, 3), "pitch": (n,), "yaw": (n,),
              "roll": (n,), "R": (n, 3, 3)}
    for key, shape in shapes.items():
        arr = getattr(m, key)
        if arr.shape != shape:
            raise MotionFileError(f"{key} has shape {arr.shape}, expected {shape}")
    if m.coef.ndim != 2 or m.coef.shape[1] < 70:
        raise MotionFileError(f"coef has shape {m.coef.shape}, expected (M, >=70)")
    for key in PER_FRAME_KEYS:
        if not np.all(np.isfinite(getattr(m, key))):
            raise MotionFileError(f"{key} contains NaN or infinite values")
    for key, limit in PLAUSIBLE_ABS_MAX.items():
        peak = float(np.max(np.abs(getattr(m, key))))
        if peak > limit:
            raise MotionFileError(f"{key} reaches {peak:.3g}, far outside the plausible range (|{key}| <= {limit:g}): "
                                  "the file is damaged or was edited by hand")
    if n:
        eye = np.einsum("nij,nkj->nik", m.R.astype(np.float64), m.R.astype(np.float64))
        if np.max(np.abs(eye - np.eye(3))) > 1e-4:
            raise MotionFileError("R is not orthonormal")
    if m.raw is not None:
        for key, shape in shapes.items():
            arr = m.raw.get(key)
            if arr is None or np.shape(arr) != shape:
                raise MotionFileError(f"raw_{key} has shape {np.shape(arr)}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise MotionFileError(f"raw_{key} contains NaN or infinite values")
    if m.vad_db is not None and (np.shape(m.vad_db) != (n,) or not np.all(np.isfinite(m.vad_db))):
        raise MotionFileError(f"vad_db must be {n} finite numbers, got shape {np.shape(m.vad_db)}")
    check_motion_meta(m.meta, n, m.fps)


def read_motion(path: str | os.PathLike[str]) -> MotionData:
    """Read and validate a motion file; raises MotionFileError with the reason.

    Lazy and typed (:class:`NpzReader`): only the keys this schema uses are read, each one's dtype
    and shape checked against its header before its data, so an unknown key that inflates to
    gigabytes is never touched and a damaged header is refused in milliseconds. The caller checks
    that ``path`` is a regular file first (a FIFO would block)."""
    with NpzReader(path) as z:
        try:
            schema = z.get("schema", MemberSpec.text()) if "schema" in z else None
        except MotionFileError:
            schema = "not text"
        if schema != SCHEMA:
            raise MotionFileError(f"{path} is not a JoyVASA motion file (schema {schema!r})")
        version = z.get("schema_version", MemberSpec.integer())
        if version != SCHEMA_VERSION:
            raise MotionFileError(f"{path} has motion schema v{version}; this version of JoyVASA reads v{SCHEMA_VERSION}")
        missing = [k for k in ("fps", *PER_FRAME_KEYS, "smoothed") if k not in z]
        if missing:
            raise MotionFileError(f"{path} lacks the key {missing[0]!r}")
        exp = z.get("exp", MemberSpec.numbers((None, N_KP, 3), max_items=MAX_FRAMES * N_KP * 3))
        n = int(exp.shape[0])
        shapes = {"exp": (n, N_KP, 3), "scale": (n,), "t": (n, 3), "pitch": (n,), "yaw": (n,), "roll": (n,),
                  "R": (n, 3, 3)}
        arrays = {"exp": exp, **{k: z.get(k, MemberSpec.numbers(shape)) for k, shape in shapes.items() if k != "exp"}}
        # coef is at the model's 25 fps whatever fps is (>= 1): at most ~25 rows per frame, C = 70 or 73
        arrays["coef"] = z.get("coef", MemberSpec.numbers((None, None), max_items=(25 * n + 256) * 128))
        m = MotionData(fps=float(z.get("fps", MemberSpec.number())), coef=arrays.pop("coef"), **arrays,
                       smoothed=bool(z.get("smoothed", MemberSpec.flag())),
                       meta={k: z.get(k, MemberSpec.text() if META_TYPES[k] is np.str_ else MemberSpec.number())
                             for k in META_DEFAULTS if k in z})
        present = [k for k in RAW_KEYS if f"raw_{k}" in z]
        if len(present) == len(RAW_KEYS):
            m.raw = {k: z.get(f"raw_{k}", MemberSpec.numbers(shapes[k])) for k in RAW_KEYS}
        elif present:
            raise MotionFileError(f"{path} has some raw_* arrays but not all of "
                                  f"{', '.join('raw_' + k for k in RAW_KEYS)}")
        m.schema_minor = int(z.get("schema_minor", MemberSpec.integer())) if "schema_minor" in z else 0
        if "vad_db" in z:
            m.vad_db = z.get("vad_db", MemberSpec.numbers((n,)))
        if "controls" in z:
            m.controls = str(z.get("controls", MemberSpec.text()))
            if m.controls:  # a record that is not even sane JSON is a damaged file (its keys: checked on use)
                try:
                    loads_limited(m.controls, "its recorded controls")
                except JSONLimitError as exc:
                    raise MotionFileError(f"{path}: {exc}") from None
        if "n_frames" in z and z.get("n_frames", MemberSpec.integer()) != m.n_frames:
            raise MotionFileError(f"{path}: n_frames does not match the arrays")
    try:
        validate(m)
    except MotionFileError as exc:
        raise MotionFileError(f"{path}: {exc}") from None
    return m
