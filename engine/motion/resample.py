"""Resample a motion sequence to another frame rate (``--fps``; the animation pipeline).

Frame i of the result is at time i/fps and the result covers the same duration
(``round(n·fps/fps0)`` frames; times past the last source frame hold it). Head rotation is
interpolated by quaternion slerp of R (rotations do not interpolate linearly in Euler angles);
pitch/yaw/roll are then recomputed from the interpolated R with the inverse of the LivePortrait
convention R = (Rz(roll) Ry(yaw) Rx(pitch))ᵀ, and R is rebuilt from them so the file stays
self-consistent. exp, scale and t are interpolated linearly. ``coef`` stays at the model's fps
(schema: raw model output).
"""
from __future__ import annotations

import numpy as np

from engine.motion.npz import MotionData
from engine.motion.template import rotation_matrix_np


def angles_from_R(R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,3,3) row-vector rotation -> pitch, yaw, roll in degrees (inverse of spec §1.3)."""
    M = np.transpose(np.asarray(R, np.float64), (0, 2, 1))            # M = Rz Ry Rx
    pitch = np.arctan2(M[:, 2, 1], M[:, 2, 2])
    yaw = np.arctan2(-M[:, 2, 0], np.hypot(M[:, 2, 1], M[:, 2, 2]))
    roll = np.arctan2(M[:, 1, 0], M[:, 0, 0])
    return np.degrees(pitch), np.degrees(yaw), np.degrees(roll)


def _lerp(a: np.ndarray, idx0: np.ndarray, idx1: np.ndarray, w: np.ndarray) -> np.ndarray:
    a64 = np.asarray(a, np.float64)
    shape = (-1,) + (1,) * (a64.ndim - 1)
    return ((1 - w).reshape(shape) * a64[idx0] + w.reshape(shape) * a64[idx1]).astype(np.float32)


def resample_motion(m: MotionData, fps: float) -> MotionData:
    from scipy.spatial.transform import Rotation, Slerp

    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps}")
    n = m.n_frames
    if n == 0 or abs(fps - m.fps) < 1e-9:
        return MotionData(fps=float(fps), exp=m.exp, scale=m.scale, t=m.t, pitch=m.pitch, yaw=m.yaw, roll=m.roll,
                          R=m.R, coef=m.coef, smoothed=m.smoothed, meta=dict(m.meta))
    n_new = max(1, int(round(n * fps / m.fps)))
    pos = np.minimum(np.arange(n_new, dtype=np.float64) * m.fps / fps, n - 1)   # source frame positions
    idx0 = np.floor(pos).astype(np.int64)
    idx1 = np.minimum(idx0 + 1, n - 1)
    w = pos - idx0
    exp = _lerp(m.exp, idx0, idx1, w)                                           # (n',21,3)
    scale = _lerp(m.scale.reshape(n), idx0, idx1, w)                            # (n',)
    t = _lerp(m.t, idx0, idx1, w)                                               # (n',3)
    if n == 1:
        Rn = np.repeat(np.asarray(m.R, np.float64), n_new, 0)
    else:
        rots = Rotation.from_matrix(np.transpose(np.asarray(m.R, np.float64), (0, 2, 1)))  # active M = R^T
        Rn = np.transpose(Slerp(np.arange(n, dtype=np.float64), rots)(pos).as_matrix(), (0, 2, 1))
    pitch, yaw, roll = angles_from_R(Rn)
    R = rotation_matrix_np(pitch, yaw, roll)                                    # (n',3,3)
    return MotionData(fps=float(fps), exp=exp, scale=scale, t=t, pitch=pitch.astype(np.float32),
                      yaw=yaw.astype(np.float32), roll=roll.astype(np.float32), R=R, coef=m.coef,
                      smoothed=m.smoothed, meta=dict(m.meta))
