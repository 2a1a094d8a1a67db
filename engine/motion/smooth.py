"""EMA smoothing of head pose as upstream (spec §2.7): alpha = 0.01, exp untouched, R recomputed.

Why float32 and a sequential loop: upstream smooths in float32 frame by frame; the recurrence
``s_i = a·v_i + (1-a)·s_{i-1}`` is evaluated in the same order so results match to the bit.
"""
from __future__ import annotations

import numpy as np

from engine.motion.template import rotation_matrix_np

ALPHA = 0.01
POSE_KEYS = ("scale", "t", "pitch", "yaw", "roll")


class CausalEma:
    """The EMA's state between calls: feeding a sequence in any number of pieces gives the same
    float32 values as one :func:`ema` over the whole (the live stream smooths frame batches)."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.a, self.b = np.float32(alpha), np.float32(1.0 - alpha)
        self.state: np.ndarray | None = None

    def push(self, values: np.ndarray) -> np.ndarray:
        """(n, C) next values -> (n, C) smoothed: s_0 = v_0, s_i = a v_i + (1-a) s_{i-1}."""
        v = np.asarray(values, dtype=np.float32)
        out = np.empty_like(v)
        s = self.state
        for i in range(len(v)):
            s = v[i].copy() if s is None else self.a * v[i] + self.b * s
            out[i] = s
        self.state = s
        return out


def ema(values: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """EMA over axis 0 of an (n, C) float32 array: s_0 = v_0, s_i = a v_i + (1-a) s_{i-1}."""
    return CausalEma(alpha).push(values)


def pose_vector(motion: dict[str, np.ndarray]) -> np.ndarray:
    """[scale, tx, ty, tz, pitch, yaw, roll] per frame, (n, 7) float32 (what the EMA smooths)."""
    n = len(motion["scale"])
    return np.concatenate([np.asarray(motion[k], np.float32).reshape(n, -1) for k in POSE_KEYS], 1)


def with_pose(motion: dict[str, np.ndarray], sm: np.ndarray) -> dict[str, np.ndarray]:
    """A copy of ``motion`` with the (n, 7) pose ``sm`` and R recomputed from its angles."""
    n = len(sm)
    out = dict(motion)
    out["scale"], out["t"] = sm[:, 0:1], sm[:, 1:4]
    out["pitch"], out["yaw"], out["roll"] = sm[:, 4:5], sm[:, 5:6], sm[:, 6:7]
    out["R"] = rotation_matrix_np(out["pitch"], out["yaw"], out["roll"]) if n else np.zeros((0, 3, 3), np.float32)
    return out


def smooth_pose(motion: dict[str, np.ndarray], alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """Return a copy with [scale, t, pitch, yaw, roll] EMA-smoothed and R recomputed."""
    return with_pose(motion, ema(pose_vector(motion), alpha))
