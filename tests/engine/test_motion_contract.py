"""The motion file is the contract between the halves: both sides read it with the contract's
reader (engine/contract/npz_reader.py), each through its own wrapper (the engine's path checks,
the add-on's float64 view); these check the wrappers accept and refuse the same files.

The golden file was written once by the engine.
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


# -- schema 1.1 and the validation rules: both readers accept and reject the same files ---------
def _golden_arrays() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


def _edited_arrays(tmp_path: Path) -> dict[str, np.ndarray]:
    from engine.motion.controls import parse_controls
    from engine.motion.edit import apply_controls

    m = load_motion(GOLDEN)
    m.vad_db = np.linspace(-60, 0, m.n_frames).astype(np.float32)
    edited = apply_controls(m, parse_controls({"head_gain": 0.5, "head_offset_deg": {"yaw": 4},
                                               "blink": {"rate_per_min": 30}}))
    path = save_motion(tmp_path / "edited.npz", edited)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _both(path: Path) -> tuple[str, str]:
    from engine.motion.npz import MotionFileError as EngineError

    verdicts = []
    for reader, err in ((load_motion, EngineError), (motion_core.load_motion, motion_core.MotionFileError)):
        try:
            reader(path)
            verdicts.append("ok")
        except err as exc:
            verdicts.append(f"rejected: {exc}")
    return verdicts[0], verdicts[1]


def test_both_readers_read_schema_1_1_the_same_way(tmp_path: Path) -> None:
    arrays = _edited_arrays(tmp_path)
    assert int(arrays["schema_minor"]) == 1 and "raw_yaw" in arrays and "controls" in arrays
    path = tmp_path / "e.npz"
    np.savez(path, **arrays)
    eng, add = load_motion(path), motion_core.load_motion(path)
    np.testing.assert_array_equal(eng.yaw, add.yaw)
    np.testing.assert_array_equal(eng.exp, add.exp)
    for k in ("exp", "pitch", "yaw", "roll", "t", "scale", "R"):
        np.testing.assert_array_equal(eng.raw[k], add.raw[k])
    np.testing.assert_array_equal(eng.vad_db, add.vad_db)
    assert eng.controls == add.controls and '"head_gain"' in add.controls
    assert add.schema_minor == 1 and motion_core.load_motion(GOLDEN).schema_minor == 0
    # the neutral of relative consumers is the raw frame 0 (so the 4 deg yaw offset stays visible)
    assert abs(add.reference_pose()[1] - float(arrays["raw_yaw"][0])) < 1e-6
    assert abs(add.yaw[0] - add.reference_pose()[1]) > 3.0


def _mutations(tmp_path: Path):
    g = _golden_arrays()
    e = _edited_arrays(tmp_path)
    n = int(g["n_frames"])
    yield "golden 1.0", g, True
    yield "edited 1.1", e, True
    yield "future minor + unknown key", {**e, "schema_minor": np.array(7, np.int32), "something_new": np.ones(3)}, True
    yield "major 2", {**g, "schema_version": np.array(2, np.int32)}, False
    yield "zero frames", {**g, **{k: g[k][:0] for k in ("exp", "scale", "t", "pitch", "yaw", "roll", "R", "coef")},
                          "n_frames": np.array(0, np.int32)}, False
    yield "n_frames mismatch", {**g, "n_frames": np.array(n + 1, np.int32)}, False
    yield "NaN in R", {**g, "R": np.where(np.arange(9).reshape(1, 3, 3) == 4, np.nan, g["R"]).astype(np.float32)}, False
    yield "R not orthonormal", {**g, "R": (g["R"] * 1.1).astype(np.float32)}, False
    yield "coef too narrow", {**g, "coef": g["coef"][:, :40]}, False
    yield "NaN in coef", {**g, "coef": np.full_like(g["coef"], np.nan)}, False
    yield "R missing", {k: v for k, v in g.items() if k != "R"}, False
    yield "exp wrong shape", {**g, "exp": g["exp"].reshape(n, 63)}, False
    yield "raw_R missing", {k: v for k, v in e.items() if k != "raw_R"}, False
    yield "raw_exp wrong shape", {**e, "raw_exp": e["raw_exp"][:-1]}, False
    yield "vad_db wrong length", {**e, "vad_db": e["vad_db"][:-1]}, False
    yield "fps zero", {**g, "fps": np.array(0.0, np.float32)}, False
    yield "fps 500", {**g, "fps": np.array(500.0, np.float32)}, False
    yield "yaw far outside the plausible range", {**g, "yaw": (g["yaw"] + 1000).astype(np.float32)}, False
    yield "not a motion file", {**g, "schema": np.array("something.else")}, False


def test_both_readers_accept_and_reject_the_same_files(tmp_path: Path) -> None:
    for name, arrays, good in _mutations(tmp_path):
        path = tmp_path / (name.replace(" ", "_") + ".npz")
        np.savez(path, **arrays)
        eng, add = _both(path)
        assert (eng == "ok") == (add == "ok") == good, f"{name}: engine {eng!r}, add-on {add!r}"
