"""The motion-edit layer (engine/motion/edit.py) and the controls schema (engine/motion/controls.py)
on synthetic motion: neutral changes nothing, and each control does what docs/art-direction.md says."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.export.arkit import channel_weights
from engine.motion import edit as E
from engine.motion.controls import Controls, ControlsError, load_controls, parse_controls, sample_track

FPS = 25.0
OFFSET = -0.08


def synthetic(seconds: float = 6.0, seed: int = 0) -> E.RawMotion:
    """Talking-like motion: smooth head sway, lips moving about lip_array, open eyes."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS)) + 2                      # + the 2 lead-in frames of upstream
    tt = np.arange(n) / FPS
    lip = E._directions()["lip_array"]
    exp = np.repeat(lip[None], n, 0) + rng.normal(0, 2e-4, (n, 21, 3))
    exp[:, 19, 1] += 0.02 * (1 + np.sin(2 * np.pi * 3.1 * tt))      # mouth opening and closing
    exp[:, 14, 1] += 0.005 * np.sin(2 * np.pi * 1.7 * tt)
    exp[:, 1, 1] += 0.002 * np.sin(2 * np.pi * 0.4 * tt)            # brows drift
    pitch = 3 * np.sin(2 * np.pi * 0.3 * tt)
    yaw = 5 * np.sin(2 * np.pi * 0.2 * tt + 1)
    roll = 2 * np.sin(2 * np.pi * 0.25 * tt + 2)
    t = np.stack([0.01 * np.sin(tt), 0.02 * np.cos(tt), np.zeros(n)], 1)
    scale = 1.5 + 0.01 * np.sin(tt)
    R = E.rotation_from_angles(pitch, yaw, roll)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return E.RawMotion(FPS, f32(exp), f32(pitch), f32(yaw), f32(roll), f32(t), f32(scale), f32(R), OFFSET)


def test_neutral_controls_return_the_raw_arrays_themselves():
    raw = synthetic()
    neutral_forms = [Controls(), parse_controls({}), parse_controls({
        "version": 1, "fps": 30, "head_gain": {"pitch": 1, "yaw": [1, 1, 1], "roll": 1}, "head_offset_deg": {"yaw": 0},
        "expression_gain": 1.0, "lip_gain": [1.0], "eye_gain": 1, "expression_offset": {"smile": 0},
        "blink": {"rate_per_min": 0}, "silence": None, "fade_s": {"in": 0, "out": 0},
        "gaze": {"x": 0, "y": 0, "follow_head": True}})]
    for c in neutral_forms:
        assert E.is_neutral(c)
        out = E.edit_motion(raw, c, vad_db=np.zeros(raw.n_frames))
        for key in ("exp", "pitch", "yaw", "roll", "t", "scale", "R"):
            assert out[key] is getattr(raw, key), key


def test_head_gain_zero_freezes_the_pose_and_offsets_move_only_their_axis():
    raw = synthetic()
    out = E.edit_motion(raw, parse_controls({"head_gain": 0}))
    for a in ("pitch", "yaw", "roll"):
        assert np.ptp(out[a]) < 1e-5 and abs(out[a][0] - getattr(raw, a)[0]) < 1e-5
    assert np.ptp(out["t"], axis=0).max() < 1e-6 and np.ptp(out["scale"]) < 1e-6
    assert np.abs(out["R"] - out["R"][0]).max() < 1e-6
    assert np.array_equal(out["exp"], raw.exp)             # expression untouched
    off = E.edit_motion(raw, parse_controls({"head_offset_deg": {"yaw": 10}}))
    np.testing.assert_allclose(off["yaw"], raw.yaw + 10, atol=1e-4)
    np.testing.assert_allclose(off["pitch"], raw.pitch, atol=1e-5)
    np.testing.assert_allclose(off["roll"], raw.roll, atol=1e-5)
    # per-axis gain: only yaw frozen
    only_yaw = E.edit_motion(raw, parse_controls({"head_gain": {"yaw": 0}}))
    assert np.ptp(only_yaw["yaw"]) < 1e-5 and np.ptp(only_yaw["pitch"]) > 1.0


def test_per_frame_head_gain_track_zero_then_one():
    raw = synthetic()
    half = 75                                               # control frames at 25 fps: 3 s of 0, then 1
    out = E.edit_motion(raw, parse_controls({"head_gain": [0.0] * half + [1.0] * half}))
    times = raw.times()
    first = times < 3.0 - 1 / FPS
    second = times >= 3.0
    assert np.ptp(out["yaw"][first]) < 1e-5
    np.testing.assert_allclose(out["yaw"][second], raw.yaw[second], atol=1e-5)
    assert np.ptp(out["yaw"][second]) > 3.0


def test_track_is_mapped_by_time_and_holds_its_ends():
    times = np.array([-0.08, 0.0, 0.5, 1.0, 9.0])
    v = sample_track(np.array([0.0, 1.0, 2.0]), times, fps=2.0)   # values at 0, 0.5, 1.0 s
    np.testing.assert_allclose(v, [0.0, 0.0, 1.0, 2.0, 2.0])
    assert np.all(sample_track(0.7, times, 25) == 0.7)


def _count_blinks(closure: np.ndarray, thr: float) -> int:
    above = closure > thr
    return int(np.sum(above[1:] & ~above[:-1]) + above[0])


@pytest.mark.parametrize("seed", range(40))
def test_blink_rate_20_per_min_on_6_s_gives_2_plus_minus_1(seed):
    raw = synthetic(6.0, seed=seed % 3)
    out = E.edit_motion(raw, parse_controls({"blink": {"rate_per_min": 20, "duration_s": 0.2, "seed": seed}}))
    closure = E.eye_closure_units(out["exp"]) - E.eye_closure_units(raw.exp)
    n = _count_blinks(closure, 0.5 * E.BLINK_FULL_UNITS)
    assert 1 <= n <= 3, n
    assert closure.max() > 0.9 * E.BLINK_FULL_UNITS        # full closures reach the eye rows
    rows = sorted(set(np.flatnonzero(np.abs(out["exp"] - raw.exp).max(axis=(0, 2)) > 1e-6)))
    assert set(rows) <= {1, 2, 11, 13, 15, 16}             # eye rows (+ ALP's brow coupling) only


def test_no_blinks_at_rate_zero_and_blinks_on_a_short_clip():
    raw = synthetic(6.0)
    out = E.edit_motion(raw, parse_controls({"blink": {"rate_per_min": 0, "seed": 3}}))
    assert out["exp"] is raw.exp
    short = synthetic(1.2)
    for seed in range(10):
        out = E.edit_motion(short, parse_controls({"blink": {"rate_per_min": 10, "seed": seed}}))
        closure = E.eye_closure_units(out["exp"]) - E.eye_closure_units(short.exp)
        assert _count_blinks(closure, 10.0) == 1


def test_generated_blinks_do_not_double_a_closure_the_model_made():
    raw = synthetic(6.0)
    tt = raw.times()
    model = np.zeros(raw.n_frames)
    for a, b in ((0.6, 1.6), (2.2, 3.2), (3.8, 4.6)):     # long model closures (< half the clip)
        model[(tt > a) & (tt < b)] = E.BLINK_FULL_UNITS
    raw.exp = (raw.exp + model[:, None, None] * E.blink_direction()).astype(np.float32)
    base = E.eye_closure_units(raw.exp)
    added_elsewhere = []
    for seed in range(20):
        out = E.edit_motion(raw, parse_controls({"blink": {"rate_per_min": 30, "seed": seed}}))
        closure = E.eye_closure_units(out["exp"])
        assert closure.max() <= base.max() + 0.5            # never deeper than one full closure
        closed = model > 0                                  # where the model closed the eyes: ~nothing added
        assert (closure[closed] - base[closed]).max() < 0.05 * E.BLINK_FULL_UNITS
        added_elsewhere.append((closure[~closed] - base[~closed]).max())
    assert max(added_elsewhere) > 0.5 * E.BLINK_FULL_UNITS   # blinks do happen where the eyes are open


def _speech_gap_wave(seconds: float = 6.0, gap=(2.0, 4.0), sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    tt = np.arange(n) / sr
    syll = 0.5 * (1 + np.sin(2 * np.pi * 4 * tt))           # syllable-rate envelope, never silent for long
    wave = 0.2 * rng.standard_normal(n) * (0.3 + 0.7 * syll)
    wave[(tt >= gap[0]) & (tt < gap[1])] = 1e-4 * rng.standard_normal(int((gap[1] - gap[0]) * sr))
    return wave.astype(np.float32)


def test_silence_relaxes_the_mouth_to_closed_and_leaves_speech_alone():
    raw = synthetic(6.0)
    vad = E.voice_level_db(_speech_gap_wave(), 16000, raw.times())
    c = parse_controls({"silence": {}})
    assert c.silence is not None and c.silence.attack_s <= 0.1 and c.silence.release_s <= 0.3
    out = E.edit_motion(raw, c, vad_db=vad)
    tt = raw.times()
    closed = E._directions()["lip_array"][list(E.LIP_ROWS)]
    dev_raw = np.abs(raw.exp[:, list(E.LIP_ROWS)] - closed).max(axis=(1, 2))
    dev = np.abs(out["exp"][:, list(E.LIP_ROWS)] - closed).max(axis=(1, 2))
    quiet = (tt > 2.3) & (tt < 3.9)
    speech = ((tt > 0.2) & (tt < 1.8)) | ((tt > 4.1) & (tt < 5.8))
    assert dev[quiet].max() < 1e-6 and dev_raw[quiet].max() > 0.02
    np.testing.assert_array_equal(out["exp"][speech], raw.exp[speech])
    assert np.ptp(out["exp"][speech, 19, 1]) > 0.03         # the mouth still moves in speech
    # calm head: the head keeps moving in speech, the fast part is gone in silence
    calm = E.edit_motion(raw, parse_controls({"silence": {"relax": False, "calm_head": True}}), vad_db=vad)
    assert np.array_equal(calm["exp"], raw.exp)
    assert np.abs(np.diff(calm["yaw"][quiet])).max() < np.abs(np.diff(raw.yaw[quiet])).max()
    np.testing.assert_allclose(calm["yaw"][speech], raw.yaw[speech], atol=1e-4)
    with pytest.raises(ControlsError, match="vad_db"):
        E.edit_motion(raw, c, vad_db=None)


def test_voice_level_is_relative_to_the_clip_loud_level():
    wave = _speech_gap_wave()
    tt = np.arange(0, 6, 0.04)
    a = E.voice_level_db(wave, 16000, tt)
    b = E.voice_level_db(wave * 0.01, 16000, tt)            # 40 dB quieter recording, same measure
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert a[(tt > 2.2) & (tt < 3.8)].max() < -40 and np.median(a[tt < 1.9]) > -10


@pytest.mark.parametrize("channel,value,expect", [
    ("smile", 0.5, "mouthSmile"), ("mouth_open", 0.4, "jawOpen"), ("brow", 0.6, "browUp"),
    ("brow", -0.5, "browDown"), ("eye_open", -0.7, "eyeBlinkRight"), ("eye_open", 0.8, "eyeWideLeft")])
def test_expression_offsets_move_their_semantic_channel(channel, value, expect):
    raw = synthetic(2.0)
    out = E.edit_motion(raw, parse_controls({"expression_offset": {channel: value}}))
    w = channel_weights(np.stack([raw.exp[10], out["exp"][10]]), reference_mode="first",
                        groups=("mouth", "eyes", "brows"))
    got = {k: float(v[1]) for k, v in w.items() if not k.startswith("_")}
    assert abs(got[expect] - abs(value)) < 0.02, got
    family = expect.replace("Left", "").replace("Right", "")     # both eyes move together
    others = {k: v for k, v in got.items() if k.replace("Left", "").replace("Right", "") != family}
    assert all(abs(v - abs(value)) < 0.02 for k, v in got.items() if k not in others), got
    assert max(others.values()) < 0.05, got
    assert np.array_equal(out["pitch"], raw.pitch)


def test_gains_scale_their_rows_about_the_neutral():
    raw = synthetic()
    lip = list(E.LIP_ROWS)
    closed = E._directions()["lip_array"]
    out = E.edit_motion(raw, parse_controls({"lip_gain": 0}))
    np.testing.assert_allclose(out["exp"][:, lip], np.broadcast_to(closed[lip], out["exp"][:, lip].shape), atol=1e-7)
    others = [r for r in range(21) if r not in lip]
    np.testing.assert_array_equal(out["exp"][:, others], raw.exp[:, others])
    eye = E.edit_motion(raw, parse_controls({"eye_gain": 0.0}))
    assert np.ptp(eye["exp"][:, list(E.EYE_ROWS)], axis=0).max() < 1e-7
    half = E.edit_motion(raw, parse_controls({"expression_gain": 0.5}))
    np.testing.assert_allclose(half["exp"][:, 1] - raw.exp[0, 1], 0.5 * (raw.exp[:, 1] - raw.exp[0, 1]), atol=1e-7)


def test_gaze_offset_and_head_compensation():
    raw = synthetic()
    out = E.edit_motion(raw, parse_controls({"gaze": {"x": 0.5}}))
    w = channel_weights(np.stack([raw.exp[5], out["exp"][5]]), reference_mode="first", groups=("gaze",))
    assert abs(w["lookImageRight"][1] - 0.5) < 0.02 and w["lookImageLeft"][1] < 0.02
    comp = E.edit_motion(raw, parse_controls({"gaze": {"follow_head": 0}}))
    dyaw = raw.yaw - raw.yaw[0]
    d = comp["exp"] - raw.exp
    k = int(np.argmax(dyaw))
    expect = E.gaze_vector(np.array([E.GAZE_PER_DEG["x"] * dyaw[k]]), np.array([E.GAZE_PER_DEG["y"] * (raw.pitch[k] - raw.pitch[0])]))[0]
    np.testing.assert_allclose(d[k], expect, atol=1e-6)
    assert np.abs(expect).max() > 1e-4


def test_fade_starts_and_ends_at_the_neutral():
    raw = synthetic()
    out = E.edit_motion(raw, parse_controls({"fade_s": {"in": 0.5, "out": 0.5}, "expression_offset": {"smile": 0.4}}),
                        audio_duration_s=6.0)
    tt = raw.times()
    ref = raw.exp[0].copy()
    ref[list(E.LIP_ROWS)] = E._directions()["lip_array"][list(E.LIP_ROWS)]
    for i in (0, 1, 2):                                     # lead-in frames and audio time 0
        np.testing.assert_allclose(out["exp"][i], ref, atol=1e-7)
        assert abs(out["yaw"][i] - raw.yaw[0]) < 1e-4
    last = raw.n_frames - 1                                 # 40 ms before the end: 2 % of the motion left
    assert np.abs(out["exp"][last] - ref).max() < 0.03 * np.abs(raw.exp[last] + 0.02 - ref).max()
    assert abs(out["yaw"][last] - raw.yaw[0]) < 0.03 * abs(raw.yaw[last] - raw.yaw[0]) + 1e-4
    mid = (tt > 1) & (tt < 5)
    np.testing.assert_allclose(out["yaw"][mid], raw.yaw[mid], atol=1e-4)


def test_numpy_rotation_matches_the_engine_rotation():
    from engine.motion.template import rotation_matrix_np

    rng = np.random.default_rng(1)
    p, y, r = (rng.uniform(-40, 40, 50) for _ in range(3))
    np.testing.assert_allclose(E.rotation_from_angles(p, y, r), rotation_matrix_np(p, y, r), atol=2e-6)


@pytest.mark.parametrize("bad,match", [
    ({"head_gain": -1}, "head_gain"), ({"version": 2}, "version"), ({"smile": 1}, "unknown controls key"),
    ({"blink": {"rate": 3}}, "blink: unknown"), ({"lip_gain": []}, "empty"), ({"gaze": {"x": "left"}}, "gaze.x"),
    ({"expression_offset": {"smile": float("nan")}}, "finite"), ([], "JSON object"), ({"blink": {"seed": 1.5}}, "seed")])
def test_bad_controls_say_which_key(bad, match):
    with pytest.raises(ControlsError, match=match):
        parse_controls(bad)


def test_controls_file_roundtrip_and_errors(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"version": 1, "head_gain": [0, 0.5, 1], "blink": {"rate_per_min": 12}}))
    c = load_controls(p)
    again = parse_controls(c.to_dict())
    assert again.to_dict() == c.to_dict()
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ControlsError, match="not valid JSON"):
        load_controls(tmp_path / "bad.json")
    with pytest.raises(ControlsError, match="does not exist"):
        load_controls(tmp_path / "missing.json")


def test_run_controls_default_to_the_files_own_and_take_the_shorthands():
    from engine.motion.edit import load_run_controls

    recorded = json.dumps(parse_controls({"head_gain": 0.5, "blink": {"rate_per_min": 10}}).to_dict())
    c = load_run_controls(None, recorded=recorded)                  # animate --motion edited.npz: as edited
    assert c.head_gain["yaw"] == 0.5 and c.blink.rate_per_min == 10
    c = load_run_controls(None, pose_strength=0.5, region="pose", recorded=recorded)   # shorthands multiply in
    assert c.head_gain["pitch"] == 0.25 and c.expression_gain == 0.0
    c = load_run_controls(None, pose_strength=0.5, region="lip")
    assert c.head_gain["roll"] == 0.0 and c.eye_gain == 0.0 and c.other_gain == 0.0 and c.lip_gain == 1.0
    assert E.is_neutral(load_run_controls(None))
