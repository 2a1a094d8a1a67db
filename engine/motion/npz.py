"""The engine's side of the motion file (schema ``joyvasa.motion``; what it holds, the reader and
the validator: engine/contract/npz_reader.py, shared whole with the add-on): writing it
atomically, and reading it after the engine's path checks.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.contract.npz_reader import (FPS_RANGE, MAX_FRAMES, META_DEFAULTS, N_KP,  # noqa: F401  (the engine's names)
                                        PER_FRAME_KEYS, PLAUSIBLE_ABS_MAX, RAW_KEYS, SCHEMA, SCHEMA_MINOR,
                                        SCHEMA_VERSION, MotionData, MotionFileError, read_motion, validate)


def save_motion(path: str | os.PathLike[str], m: MotionData) -> Path:
    """Validate and write atomically (temp file in the same folder + rename)."""
    from engine.fileio import atomic_path

    validate(m)
    arrays = motion_arrays(m)
    final = Path(path)
    with atomic_path(final, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return final


def motion_arrays(m: MotionData) -> dict[str, np.ndarray]:
    """The arrays of the file :func:`save_motion` writes for ``m`` (key -> typed array)."""
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
    for key, default in META_DEFAULTS.items():
        value = m.meta.get(key, default)
        arrays[key] = np.array(str(value)) if isinstance(default, str) else np.array(value, dtype=np.asarray(default).dtype)
    return arrays


def load_motion(path: str | os.PathLike[str]) -> MotionData:
    """Read and validate a motion file (:func:`~engine.contract.npz_reader.read_motion`) once the
    path is known to be a readable regular file; raises MotionFileError with the reason."""
    from engine.pathguard import input_problem

    problem = input_problem(path)
    if problem:
        hint = "; pass a .npz file" if "folder" in problem else ""
        raise MotionFileError(f"motion file {path} {problem}{hint}")
    return read_motion(path)
