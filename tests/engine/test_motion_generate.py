"""generate_motion / the motion command on synthetic tiny weights."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.motion.generate import AUDIO_OFFSET_S, MotionModel, MotionOptions, generate_motion
from engine.motion.npz import load_motion, save_motion
from engine.weights import WeightsLayout

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def layout(synthetic_tiny_joyvasa):
    return WeightsLayout(synthetic_tiny_joyvasa)


@pytest.fixture(scope="module")
def model(layout):
    return MotionModel.load(layout)


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * 180 * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpmpp_2m"])
def test_frames_meta_and_determinism(layout, model, sampler):
    wave = _speech(2.0)
    opts = MotionOptions(seed=7, sampler=sampler)
    m = generate_motion(model, wave, opts)
    assert m.n_frames == (32000 + 1920) // 640          # = floor(n'/640) when padding happened
    assert m.coef.shape == (m.n_frames, 73)
    assert m.meta["sampler"] == sampler and m.meta["seed"] == 7
    assert m.meta["steps"] == (10 if sampler == "ancestral" else 10)  # tiny N = 10 caps the defaults
    assert m.meta["audio_offset_s"] == pytest.approx(AUDIO_OFFSET_S) == pytest.approx(-0.08)
    assert m.meta["audio_duration_s"] == pytest.approx(2.0)
    assert len(m.meta["checkpoint_sha256"]) == 64 and len(m.meta["audio_sha256"]) == 64
    again = generate_motion(model, wave, opts)
    assert np.array_equal(m.coef, again.coef)
    other = generate_motion(model, wave, MotionOptions(seed=8, sampler=sampler))
    assert not np.array_equal(m.coef, other.coef)


def test_silence_and_shorter_than_one_window(layout, model):
    m = generate_motion(model, np.zeros(800, np.float32), MotionOptions())
    assert m.n_frames == (800 + 1920) // 640 and np.all(np.isfinite(m.coef))


def test_smoothing_and_pe_variant(layout, model):
    wave = _speech(1.5)
    raw = generate_motion(model, wave, MotionOptions(smooth=False))
    sm = generate_motion(model, wave, MotionOptions(smooth=True))
    assert np.array_equal(raw.exp, sm.exp) and np.array_equal(raw.coef, sm.coef)
    assert np.diff(sm.yaw).std() < np.diff(raw.yaw).std()
    assert sm.yaw[0] == raw.yaw[0]
    legacy = generate_motion(model, wave, MotionOptions(pe_variant="legacy"))
    assert legacy.meta["pe_variant"] == "legacy" and not np.array_equal(legacy.coef, sm.coef)


def test_first_upload_generation_70_25(tmp_path):
    from engine.motion.synthetic import write_joyvasa_weights

    write_joyvasa_weights(tmp_path, "tiny", seed=2, overrides={"motion_feat_dim": 70, "n_prev_motions": 25})
    m = generate_motion(MotionModel.load(WeightsLayout(tmp_path)), _speech(1.0), MotionOptions(sampler="ddim", steps=3))
    assert m.coef.shape[1] == 70 and m.n_frames == (16000 + 1920) // 640


def test_bad_options():
    from engine.errors import BadRequest

    for kw in ({"sampler": "euler"}, {"steps": 0}, {"pe_variant": "x"}, {"fps": -1.0}, {"cfg_mode": "y"}):
        with pytest.raises(BadRequest):
            MotionOptions(**kw)


def test_save_round_trip_and_fps(layout, model, tmp_path):
    m = generate_motion(model, _speech(1.0), MotionOptions(fps=50.0))
    assert m.fps == 50.0 and m.n_frames == 2 * ((16000 + 1920) // 640)
    path = save_motion(tmp_path / "m.npz", m)
    back = load_motion(path)
    assert back.meta["sampler"] == "dpmpp_2m" and np.array_equal(back.yaw, m.yaw)


def test_cli_json_protocol(synthetic_tiny_joyvasa, tmp_path):
    audio = tmp_path / "speech.flac"
    sf.write(audio, _speech(1.2), 16000)
    out = tmp_path / "out.npz"
    proc = subprocess.run([sys.executable, "-m", "engine", "motion", "--audio", str(audio), "--out", str(out),
                           "--weights", str(synthetic_tiny_joyvasa), "--progress", "json", "--device", "cpu",
                           "--sampler", "ancestral", "--seed", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["type"] == "hello" and events[0]["sampler"] == "ancestral"
    stages = {e["stage"] for e in events if e["type"] == "progress"}
    assert {"load", "audio", "motion"} <= stages
    windows = [e for e in events if e["type"] == "progress" and e["stage"] == "motion"]
    assert windows[-1]["done"] == windows[-1]["total"] and windows[-1]["unit"] == "window"
    assert events[-2] == {**events[-2], "type": "artifact", "kind": "motion_npz", "path": str(out)}
    assert events[-1]["type"] == "done" and events[-1]["outputs"]["motion_npz"] == str(out)
    m = load_motion(out)
    assert m.meta["seed"] == 3 and m.meta["steps"] == 10


def test_cli_missing_audio_is_one_error_event(synthetic_tiny_joyvasa, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "motion", "--audio", str(tmp_path / "no.wav"),
                           "--out", str(tmp_path / "o.npz"), "--weights", str(synthetic_tiny_joyvasa),
                           "--progress", "json", "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "audio_invalid"
    assert not (tmp_path / "o.npz").exists()


def test_windows_are_encoded_in_bounded_chunks(model):
    """The audio encoder runs ENCODE_CHUNK windows per call (bounded memory), never the whole file at once."""
    from engine.motion.generate import ENCODE_CHUNK, generate_coef

    shapes = []
    original = model.encode

    def spy(audio, *rest):
        shapes.append(tuple(audio.shape))
        return original(audio, *rest)

    model.encode = spy
    try:
        coef = generate_coef(model, _speech(3.0), MotionOptions(sampler="ddim", steps=2))
    finally:
        del model.encode
    L = model.config.n_motions
    n_windows = -(-((48000 + 1920) // 640) // L)
    expected = [(min(ENCODE_CHUNK, n_windows - lo), 640 * L) for lo in range(0, n_windows, ENCODE_CHUNK)]
    assert ENCODE_CHUNK > 1 and shapes == expected
    assert coef.shape[0] == (48000 + 1920) // 640


def test_batched_encoding_equals_one_window_at_a_time(model):
    """Batching the audio encoder over windows changes only rounding, and the sampled motion with it."""
    from engine.motion.generate import generate_coef

    wave = _speech(3.0)
    one = model.encode_wave(wave, chunk=1)
    many = model.encode_wave(wave, chunk=4)
    assert len(one) == len(many) > 1
    for a, b in zip(one, many):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    opts = MotionOptions(sampler="ddim", steps=2)
    c1 = generate_coef(model, wave, opts, features=one)
    c2 = generate_coef(model, wave, opts, features=many)
    assert np.abs(c1 - c2).max() < 1e-4


def test_cancel_stops_generation(layout, model):
    from engine.errors import Cancelled
    from engine.runner import Reporter

    rep = Reporter(None, quiet=True)
    calls = {"n": 0}
    original = model.encode

    def cancel_after_first(audio, *rest):
        calls["n"] += 1
        rep.cancel.set()
        return original(audio, *rest)

    model.encode = cancel_after_first
    try:
        with pytest.raises(Cancelled) as info:
            generate_motion(model, _speech(3.0), MotionOptions(), reporter=rep)
    finally:
        del model.encode
    assert info.value.stage == "motion" and calls["n"] == 1
