"""EMA smoothing of head pose as upstream (spec §2.7): alpha = 0.01, exp untouched, R recomputed.

Why float32 and a sequential loop: upstream smooths in float32 frame by frame; the recurrence
``s_i = a·v_i + (1-a)·s_{i-1}`` is evaluated in the same order so results match to the bit.
"""
from __future__ import annotations

import numpy as np

from engine.motion.template import rotation_matrix_np

ALPHA = 0.01
POSE_KEYS = ("scale", "t", "pitch", "yaw", "roll")


def ema(values: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """EMA over axis 0 of an (n, C) float32 array: s_0 = v_0, s_i = a v_i + (1-a) s_{i-1}."""
    v = np.asarray(values, dtype=np.float32)
    out = np.empty_like(v)
    if len(v) == 0:
        return out
    a, b = np.float32(alpha), np.float32(1.0 - alpha)
    s = v[0].copy()
    out[0] = s
    for i in range(1, len(v)):
        s = a * v[i] + b * s
        out[i] = s
    return out


def smooth_pose(motion: dict[str, np.ndarray], alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """Return a copy with [scale, t, pitch, yaw, roll] EMA-smoothed and R recomputed."""
    n = len(motion["scale"])
    stacked = np.concatenate([np.asarray(motion[k], np.float32).reshape(n, -1) for k in POSE_KEYS], 1)  # (n,7)
    sm = ema(stacked, alpha)
    out = dict(motion)
    out["scale"], out["t"] = sm[:, 0:1], sm[:, 1:4]
    out["pitch"], out["yaw"], out["roll"] = sm[:, 4:5], sm[:, 5:6], sm[:, 6:7]
    out["R"] = rotation_matrix_np(out["pitch"], out["yaw"], out["roll"]) if n else np.zeros((0, 3, 3), np.float32)
    return out
