"""The motion file: ``.npz`` schema ``joyvasa.motion`` version 1.1 (the engine <-> add-on contract).

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
joyvasa_blender/core/motion_core.py is a deliberate copy of these rules
(tests/engine/test_motion_contract.py runs both readers on the same good and broken files).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.motion.npz_reader import MemberSpec, MotionFileError, NpzReader

SCHEMA = "joyvasa.motion"
SCHEMA_VERSION = 1
SCHEMA_MINOR = 1
N_KP = 21
RAW_KEYS = ("exp", "pitch", "yaw", "roll", "t", "scale", "R")

PER_FRAME_KEYS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R", "coef")


#: Largest plausible |value| per array: ~100x what the model produces (exp ~0.1, scale ~2, t ~1,
#: pose ~±90 degrees). Beyond that the file is broken or hand-edited and would render garbage.
#: DELIBERATE COPY in joyvasa_blender/core/motion_core.py (the add-on cannot import the engine);
#: tests/contract/test_motion_bounds_copy.py checks that both agree.
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


_META_DEFAULTS: dict[str, Any] = {
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
_META_TYPES = {k: (np.str_ if isinstance(v, str) else type(v)) for k, v in _META_DEFAULTS.items()}


def validate_meta(m: MotionData) -> None:
    """The recorded numbers every reader trusts (engine/motion/npz_reader.py's check_motion_meta,
    shared with the add-on's reader)."""
    from engine.motion.npz_reader import check_motion_meta

    check_motion_meta(m.meta, m.n_frames, m.fps)


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
    validate_meta(m)


def save_motion(path: str | os.PathLike[str], m: MotionData) -> Path:
    """Validate and write atomically (temp file in the same folder + rename)."""
    from engine.fileio import atomic_path

    validate(m)
    arrays: dict[str, np.ndarray] = {
        "schema": np.array(SCHEMA),
        "schema_version": np.array(SCHEMA_VERSION, dtype=np.int32),
        "fps": np.array(m.fps, dtype=np.float32),
        "n_frames": np.array(m.n_frames, dtype=np.int32),
        "exp": m.exp.astype(np.float32),
        "scale": m.scale.astype(np.float32).reshape(-1),
        "t": m.t.astype(np.float32),
        "pitch": m.pitch.astype(np.float32).reshape(-1),
        "yaw": m.yaw.astype(np.float32).reshape(-1),
        "roll": m.roll.astype(np.float32).reshape(-1),
        "R": m.R.astype(np.float32),
        "coef": m.coef.astype(np.float32),
        "smoothed": np.array(bool(m.smoothed)),
        "schema_minor": np.array(SCHEMA_MINOR, dtype=np.int32),
    }
    if m.vad_db is not None:
        arrays["vad_db"] = np.asarray(m.vad_db, np.float32).reshape(-1)
    if m.raw is not None:
        for key in RAW_KEYS:
            arrays[f"raw_{key}"] = np.asarray(m.raw[key], np.float32).reshape(arrays[key].shape)
    if m.controls:
        arrays["controls"] = np.array(m.controls)
    for key, default in _META_DEFAULTS.items():
        value = m.meta.get(key, default)
        arrays[key] = np.array(str(value)) if isinstance(default, str) else np.array(value, dtype=np.asarray(default).dtype)
    final = Path(path)
    with atomic_path(final, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return final


def load_motion(path: str | os.PathLike[str]) -> MotionData:
    """Read and validate a motion file; raises MotionFileError with the reason.

    Lazy and typed (engine/motion/npz_reader.py): only the keys this schema uses are read, each
    one's dtype and shape checked against its header before its data, so an unknown key that
    inflates to gigabytes is never touched and a damaged header is refused in milliseconds."""
    from engine.pathguard import input_problem

    problem = input_problem(path)
    if problem:
        hint = "; pass a .npz file" if "folder" in problem else ""
        raise MotionFileError(f"motion file {path} {problem}{hint}")
    with NpzReader(path) as z:
        try:
            schema = z.get("schema", MemberSpec.text()) if "schema" in z else None
        except MotionFileError:
            schema = "not text"
        if schema != SCHEMA:
            raise MotionFileError(f"{path} is not a JoyVASA motion file (schema {schema!r})")
        version = z.get("schema_version", MemberSpec.integer())
        if version != SCHEMA_VERSION:
            raise MotionFileError(f"{path} has motion schema v{version}; this engine reads v{SCHEMA_VERSION}")
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
                       meta={k: z.get(k, MemberSpec.text() if _META_TYPES[k] is np.str_ else MemberSpec.number())
                             for k in _META_DEFAULTS if k in z})
        present = [k for k in RAW_KEYS if f"raw_{k}" in z]
        if len(present) == len(RAW_KEYS):
            m.raw = {k: z.get(f"raw_{k}", MemberSpec.numbers(shapes[k])) for k in RAW_KEYS}
        elif present:
            raise MotionFileError(f"{path} has some raw_* arrays but not all of "
                                  f"{', '.join('raw_' + k for k in RAW_KEYS)}")
        if "vad_db" in z:
            m.vad_db = z.get("vad_db", MemberSpec.numbers((n,)))
        if "controls" in z:
            m.controls = str(z.get("controls", MemberSpec.text()))
            if m.controls:  # a record that is not even sane JSON is a damaged file (its keys: checked on use)
                from engine.protocol import JSONLimitError, loads_limited

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


def _reason(exc: BaseException) -> str:
    """numpy's own message, minus its advice to enable pickle loading (never safe for a download)."""
    text = str(exc).strip()
    if "allow_pickle" in text or "pickled" in text:
        return "it is not an .npz archive (numpy would have to unpickle it, which this engine never does)"
    return text.splitlines()[0] if text else type(exc).__name__
