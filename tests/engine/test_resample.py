"""Motion resampling to another fps: duration, slerp of R, consistent angles."""
from __future__ import annotations

import numpy as np
import pytest

from engine.motion.npz import MotionData, validate
from engine.motion.resample import angles_from_R, resample_motion
from engine.motion.template import rotation_matrix_np


def _motion(n: int = 50, fps: float = 25.0) -> MotionData:
    rng = np.random.default_rng(0)
    k = np.arange(n, dtype=np.float32)
    pitch, yaw, roll = 10 * np.sin(k / 7), 25 * np.sin(k / 11), 5 * np.cos(k / 5)
    return MotionData(fps=fps, exp=rng.normal(0, 0.02, (n, 21, 3)).astype(np.float32),
                      scale=(1.5 + 0.01 * k).astype(np.float32), t=rng.normal(0, 0.01, (n, 3)).astype(np.float32),
                      pitch=pitch.astype(np.float32), yaw=yaw.astype(np.float32), roll=roll.astype(np.float32),
                      R=rotation_matrix_np(pitch, yaw, roll), coef=rng.normal(0, 1, (n, 73)).astype(np.float32),
                      meta={"sampler": "ddim"})


def test_angles_round_trip():
    m = _motion()
    p, y, r = angles_from_R(m.R)
    np.testing.assert_allclose(p, m.pitch, atol=1e-3)
    np.testing.assert_allclose(y, m.yaw, atol=1e-3)
    np.testing.assert_allclose(r, m.roll, atol=1e-3)


def test_same_fps_is_identity_and_double_fps_hits_source_frames():
    m = _motion()
    same = resample_motion(m, 25.0)
    assert np.array_equal(same.exp, m.exp) and same.n_frames == m.n_frames
    d = resample_motion(m, 50.0)
    validate(d)
    assert d.n_frames == 100 and d.fps == 50.0
    np.testing.assert_allclose(d.exp[::2], m.exp, atol=1e-6)
    np.testing.assert_allclose(d.yaw[::2], m.yaw, atol=1e-3)
    np.testing.assert_allclose(d.R[::2], m.R, atol=1e-5)
    np.testing.assert_allclose(d.scale[1], 0.5 * (m.scale[0] + m.scale[1]), atol=1e-6)
    assert d.meta == m.meta and np.array_equal(d.coef, m.coef)


@pytest.mark.parametrize("fps", [24.0, 30.0, 60.0, 12.5])
def test_duration_and_consistency(fps):
    m = _motion(77)
    r = resample_motion(m, fps)
    validate(r)
    assert abs(r.n_frames / fps - m.n_frames / m.fps) <= 0.5 / fps + 1e-9
    np.testing.assert_allclose(r.R, rotation_matrix_np(r.pitch, r.yaw, r.roll), atol=1e-6)


def test_slerp_midpoint_is_half_rotation():
    """Between yaw 0 and yaw 40 (pitch 20) slerp gives the geodesic midpoint, not Euler averages."""
    pitch = np.array([0.0, 20.0], np.float32)
    yaw = np.array([0.0, 40.0], np.float32)
    roll = np.zeros(2, np.float32)
    m = MotionData(fps=1.0, exp=np.zeros((2, 21, 3), np.float32), scale=np.ones(2, np.float32),
                   t=np.zeros((2, 3), np.float32), pitch=pitch, yaw=yaw, roll=roll,
                   R=rotation_matrix_np(pitch, yaw, roll), coef=np.zeros((2, 70), np.float32))
    r = resample_motion(m, 2.0)
    mid = r.R[1].astype(np.float64)
    a, b = m.R[0].astype(np.float64), m.R[1].astype(np.float64)
    ang = lambda x, y: np.degrees(np.arccos(np.clip((np.trace(x.T @ y) - 1) / 2, -1, 1)))  # noqa: E731
    assert ang(a, mid) == pytest.approx(ang(mid, b), abs=1e-3)
    assert ang(a, mid) == pytest.approx(ang(a, b) / 2, abs=1e-3)
