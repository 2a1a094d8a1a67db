"""Live Link Face CSV: the take file Epic's Live Link Face iPhone app writes and Unreal imports.

Layout (one header row, one row per frame)::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll

* ``Timecode`` ``HH:MM:SS:FF.mmm``: frame ``FF`` counted at the export rate (non-drop, nominal
  rate for 29.97 and the like), ``.mmm`` the sub-frame (always 0 here); row k = audio time k/fps.
* ``BlendShapeCount`` 61 (52 blendshapes + 9 rotations), as the app writes.
* the 52 ARKit columns in the app's order (it differs from Apple's enum in two places: JawRight
  before JawLeft, MouthRight before MouthLeft), values in [0, 1] from the semantic readout
  (:mod:`engine.export.arkit`: the add-on's ARKit preset with Gaze on, eyeLook* included); shapes the
  readout has no channel for are 0.
* ``HeadYaw/HeadPitch/HeadRoll`` in radians: LivePortrait's yaw, pitch, roll as they are in
  the motion file (pitch = nod, yaw = turn, roll = tilt; LivePortrait's signs). Eye rotations are
  0: the readout has no eye-rotation channel.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from engine.export import arkit
from engine.motion.npz import MotionData

#: the 52 blendshape columns in Live Link Face's CSV order (PascalCase, as in the app's header)
ARKIT_COLUMNS = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
ROTATION_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
HEADER = ("Timecode", "BlendShapeCount") + ARKIT_COLUMNS + ROTATION_COLUMNS
BLENDSHAPE_COUNT = len(ARKIT_COLUMNS) + len(ROTATION_COLUMNS)  # 61


def arkit_column(shape_key: str) -> str:
    """ARKit camelCase shape-key name -> the CSV's PascalCase column."""
    return shape_key[:1].upper() + shape_key[1:]


def timecode(frame: int, fps: float) -> str:
    """Non-drop ``HH:MM:SS:FF.mmm`` of ``frame`` at ``fps`` (nominal integer rate)."""
    rate = max(1, int(round(fps)))
    ff = frame % rate
    secs = frame // rate
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}:{ff:02d}.000"


def table(frames: MotionData, *, reference_mode: str = "auto") -> dict[str, np.ndarray]:
    """Column name -> (N,) values (every column but Timecode/BlendShapeCount)."""
    n = frames.n_frames
    weights = arkit.arkit_weights(frames.exp, reference_mode=reference_mode)
    cols: dict[str, np.ndarray] = {c: np.zeros(n) for c in ARKIT_COLUMNS + ROTATION_COLUMNS}
    for key, values in weights.items():
        col = arkit_column(key)
        if col not in cols:
            raise ValueError(f"semantic basis target {key!r} is not an ARKit blendshape")
        cols[col] = np.asarray(values, np.float64)
    for col, key in (("HeadYaw", "yaw"), ("HeadPitch", "pitch"), ("HeadRoll", "roll")):
        cols[col] = np.radians(np.asarray(getattr(frames, key), np.float64).reshape(-1))
    return cols


def write_csv(path: Path, frames: MotionData, *, reference_mode: str = "auto") -> None:
    """Write the CSV to ``path`` (the caller makes it atomic)."""
    cols = table(frames, reference_mode=reference_mode)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    data = np.stack([cols[c] for c in HEADER[2:]], axis=1)          # (N, 61)
    for k, row in enumerate(data):
        w.writerow([timecode(k, frames.fps), BLENDSHAPE_COUNT] + [_num(v) for v in row])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")


def _num(v: float) -> str:
    if not math.isfinite(v):
        raise ValueError("non-finite value in the export")
    return f"{v:.8f}".rstrip("0").rstrip(".") if v != 0 else "0"
