"""The motion file is the contract between the halves: check it against both current readers.

The golden file was written once by the engine; if ``engine/motion/npz.py`` or
``joyvasa_blender/core/motion_core.py`` drift apart, one of these fails.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.motion.npz import MotionData, load_motion, save_motion
from joyvasa_blender.core import motion_core

GOLDEN = Path(__file__).resolve().parents[1] / "contract" / "motion_v1.npz"


def test_engine_reads_the_golden_file() -> None:
    m = load_motion(GOLDEN)
    addon = motion_core.load_motion(GOLDEN)
    assert m.n_frames == addon.n_frames and m.fps == addon.fps
    np.testing.assert_array_equal(m.exp, addon.exp)
    np.testing.assert_array_equal(m.yaw, addon.yaw)
    assert m.meta["seed"] == addon.meta["seed"] and m.meta["sampler"] == addon.meta["sampler"]


def test_addon_reads_what_the_engine_writes_now(tmp_path: Path) -> None:
    n = 6
    rng = np.random.default_rng(1)
    pitch, yaw, roll = (rng.uniform(-10, 10, n).astype(np.float32) for _ in range(3))
    R = np.transpose(motion_core.rotation_from_pyr(pitch, yaw, roll), (0, 2, 1)).astype(np.float32)
    m = MotionData(30.0, rng.normal(0, 0.01, (n, 21, 3)).astype(np.float32), np.full(n, 1.2, np.float32),
                   rng.normal(0, 0.01, (n, 3)).astype(np.float32), pitch, yaw, roll, R,
                   rng.normal(size=(n, 73)).astype(np.float32),
                   meta={"seed": 11, "sampler": "dpmpp_2m", "steps": 10, "audio_offset_s": -0.08})
    path = save_motion(tmp_path / "m.npz", m)
    addon = motion_core.load_motion(path)
    assert addon.n_frames == n and addon.fps == 30.0
    np.testing.assert_allclose(addon.exp, m.exp)
    np.testing.assert_allclose(addon.pitch, pitch)
    assert addon.meta["seed"] == 11 and addon.meta["sampler"] == "dpmpp_2m"
