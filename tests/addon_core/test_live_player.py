"""The Live player (core/live_player.py): playout at a constant delay on the audio clock,
interpolation, late and bursty frames, the record buffer; and a live session of the fake worker
through core/worker.py (events in order, the take written at live_stop equals the stream)."""
from __future__ import annotations

import os
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from joyvasa_blender.core import live_player as lp
from joyvasa_blender.core import motion_core as mc
from joyvasa_blender.core import retarget
from joyvasa_blender.core.worker import EngineWorker

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
import fake_engine  # noqa: E402


def frame_event(k: int, sample: int, yaw: float | None = None, offset: float = 0.0) -> dict:
    return {"v": 1, "type": "live_frame", "seq": k, "job": "j", "frame": k, "t": offset + k / 25, "wall": 0.0,
            "sample": sample, "motion": {"pitch": 0.0, "yaw": float(k if yaw is None else yaw), "roll": 0.0,
                                         "scale": 1.0, "trans": [0.0, 0.0, 0.0], "exp": [0.01 * k] * 63}}


def started(delay: float = 0.3) -> dict:
    return {"v": 1, "type": "live_started", "seq": 0, "rate": 16000, "fps": 25, "hop": 5, "lookahead": 2,
            "source": "file", "delay_s": delay}


def test_playout_is_the_audio_clock_minus_a_constant_delay_and_interpolates():
    p = lp.Player()
    p.feed(started(0.3), now=100.0)                       # audio time 0 at local 100.0
    assert p.delay_s == pytest.approx(0.3 + lp.DELAY_MARGIN_S)
    # one hop of 5 frames arrives at audio time 0.28 (7 frames of audio received)
    for k in range(5):
        p.feed(frame_event(k, sample=int(0.28 * 16000)), now=100.28)
    D = p.delay_s
    assert p.sample(100.0 + D - 0.01) is None                 # before frame 0 is due
    row = p.sample(100.0 + D + 0.05)                           # audio time 0.05: between frames 1 and 2
    assert row.t == pytest.approx(0.05)
    assert row.yaw == pytest.approx(0.05 * 25)                # yaw = frame index: interpolated
    assert row.exp[0, 0] == pytest.approx(0.01 * 1.25)
    assert p.late == 0 and p.measured_delay() == pytest.approx(0.28 - 2 / 25, abs=1e-9)   # the middle frame


def test_a_late_start_event_is_corrected_by_the_sample_clock():
    p = lp.Player()
    p.feed(started(0.2), now=50.5)                 # live_started read 0.5 s late
    p.feed(frame_event(0, sample=3200), now=50.3 + 0.2)   # 0.2 s of audio had arrived: audio 0 was at <= 50.3
    assert p.anchor == pytest.approx(50.3)
    assert p.playout_time(51.0) == pytest.approx(0.7 - p.delay_s)


def test_persistently_late_frames_grow_the_delay_once_and_stall_holds_the_last_frame():
    p = lp.Player()
    p.feed(started(0.1), now=0.0)
    D0 = p.delay_s
    for k in range(6):                                  # each frame arrives 0.8 s after its audio time
        p.feed(frame_event(k, sample=int((k / 25 + 0.8) * 16000)), now=k / 25 + 0.8)
    assert p.late >= lp.LATE_LIMIT
    assert p.delay_s == pytest.approx(0.8 + lp.DELAY_MARGIN_S, abs=0.02) and p.delay_s > D0
    D = p.delay_s
    for k in range(6, 10):                              # from now on they arrive in time: D stays
        p.feed(frame_event(k, sample=int((k / 25 + 0.8) * 16000)), now=k / 25 + 0.8)
    assert p.delay_s == D
    # nothing after frame 9: the player holds it and counts the stall
    row = p.sample(10 / 25 + D + 1.0)
    assert row.yaw == pytest.approx(9.0) and p.stalls == 1


def test_bursts_and_out_of_order_frames_keep_time_order():
    p = lp.Player()
    p.feed(started(0.3), now=0.0)
    for k in (0, 1, 3, 2, 4):
        p.feed(frame_event(k, sample=8000), now=0.5)
    assert [f.frame for f in p.frames] == [0, 1, 2, 3, 4]
    row = p.sample(p.delay_s + 2.5 / 25)
    assert row.yaw == pytest.approx(2.5)


def test_bad_frames_are_refused_with_the_field_named():
    ev = frame_event(0, 0)
    ev["motion"]["exp"] = [0.0] * 62
    with pytest.raises(lp.LiveEventError, match="exp"):
        lp.parse_frame(ev)
    ev = frame_event(0, 0)
    ev["t"] = float("nan")
    with pytest.raises(lp.LiveEventError, match="'t'"):
        lp.parse_frame(ev)


def test_recorder_arrays_and_mismatch():
    r = lp.Recorder()
    for k in (0, 1, 2):
        r.add(lp.parse_frame(frame_event(k, 0)))
    arr = r.arrays()
    assert arr["exp"].shape == (3, 21, 3) and list(arr["yaw"]) == [0, 1, 2]
    m = mc.Motion(fps=25, exp=arr["exp"].copy(), scale=arr["scale"].copy(), t=arr["t"].copy(), pitch=arr["pitch"].copy(),
                  yaw=arr["yaw"].copy(), roll=arr["roll"].copy())
    assert lp.mismatch(arr, m) == ""
    m.yaw[1] += 0.01
    assert "yaw" in lp.mismatch(arr, m)


def test_latency_choices():
    assert lp.latency_fields("BALANCED") == {}                 # the engine's defaults
    assert lp.latency_fields("LOW") == {"hop": 5, "lookahead": 2}
    with pytest.raises(ValueError, match="BALANCED"):
        lp.latency_fields("FASTEST")


def test_row_mapper_blends_the_offline_plan_of_two_frames():
    """The timer's values = the offline path (semantic.project -> readout -> retarget.evaluate) per
    frame, blended: at w=0 exactly frame a's offline plan with the same reference."""
    from joyvasa_blender.core.contract import semantic

    presets, _ = retarget.list_presets(None)
    arkit = next(p for p in presets if p.name == retarget.ARKIT)
    z = np.load(TESTS / "contract" / "motion_v1.npz")
    frames = [lp.parse_frame(frame_event(k, 0)) for k in range(2)]
    for k, fr in enumerate(frames):
        fr.exp = z["exp"][k].astype(np.float64)
    m = lp.RowMapper(arkit)
    for fr in frames:
        m.submit(fr)
    plan, M, chans, row = m.blend(frames[0], frames[1], 0.0)
    proj = semantic.project(frames[0].exp[None], basis=m.basis, ref=m.ref)
    want = retarget.evaluate(arkit, semantic.readout(proj))
    assert set(plan.shape_keys) == set(want.shape_keys)
    for k, v in want.shape_keys.items():
        np.testing.assert_allclose(plan.shape_keys[k], v, atol=1e-9)
    half = m.blend(frames[0], frames[1], 0.5)[0]
    pb = m.frame_plan(frames[1])[0]
    for k, v in want.shape_keys.items():
        np.testing.assert_allclose(half.shape_keys[k], 0.5 * (v + pb.shape_keys[k]), atol=1e-9)


def _wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((3000 * np.sin(np.arange(int(seconds * 16000)) * 0.05)).astype("<i2").tobytes())
    return path


def test_fake_worker_live_session_streams_in_order_and_writes_the_streamed_take(tmp_path):
    py = fake_engine.write_wrapper(tmp_path / "python")
    wk = EngineWorker(str(py), None, dict(os.environ)).start()
    try:
        assert wk.wait_ready(30)
        audio = _wav(tmp_path / "a.wav", 1.2)
        job = wk.submit("live", {"source": "file", "audio": str(audio), "pace": "fast", "out": str(tmp_path / "take.npz")},
                        request="live_start")
        player, rec, events = lp.Player(), lp.Recorder(), []
        end = time.monotonic() + 20
        while not job.finished() and time.monotonic() < end:
            for ev in job.drain():
                events.append(ev)
                fr = player.feed(ev, time.monotonic())
                if fr is not None:
                    rec.add(fr)
            time.sleep(0.01)
        for ev in job.drain():
            events.append(ev)
            fr = player.feed(ev, time.monotonic())
            if fr is not None:
                rec.add(fr)
        kinds = [e["type"] for e in events if e["type"] != "_eof"]
        assert kinds[0] == "live_started" and kinds[-1] == "done"
        frames = [e for e in events if e["type"] == "live_frame"]
        assert [e["frame"] for e in frames] == list(range(len(frames))) and len(frames) >= 25
        assert all(b["sample"] >= a["sample"] for a, b in zip(frames, frames[1:]))
        done = events[-2] if events[-1]["type"] == "_eof" else events[-1]
        motion = mc.load_motion(done["outputs"]["motion_npz"])
        assert lp.mismatch(rec.arrays(), motion) == "" and motion.n_frames == len(frames)
        assert Path(done["outputs"]["audio_wav"]).is_file()
        # the worker keeps serving: a second session, stopped by live_stop
        job2 = wk.submit("live", {"source": "mic", "out": str(tmp_path / "mic.npz")}, request="live_start")
        time.sleep(0.3)
        assert wk.live_stop(job2)
        end = time.monotonic() + 20
        while not job2.finished() and time.monotonic() < end:
            time.sleep(0.02)
        assert job2.returncode == 0 and (tmp_path / "mic.npz").is_file() and (tmp_path / "mic.wav").is_file()
    finally:
        wk.stop()


def test_the_start_up_prediction_settles_once_to_the_steady_state_delay():
    p = lp.Player()
    p.feed(started(1.3), now=0.0)                          # conservative start-up prediction
    for k in range(20):                                    # every frame arrives within 0.9 s
        p.feed(frame_event(k, sample=int((k / 25 + 0.5) * 16000)), now=k / 25 + 0.5)
    p.feed({"type": "live_stats", "delay_s": 0.9, "dropped": 0}, now=1.3)
    assert p.delay_s == pytest.approx(0.9 + lp.DELAY_MARGIN_S)
    p.feed({"type": "live_stats", "delay_s": 0.6, "dropped": 0}, now=2.3)     # later: constant
    assert p.delay_s == pytest.approx(0.9 + lp.DELAY_MARGIN_S)
    q = lp.Player()
    q.feed(started(1.3), now=0.0)
    q.feed(frame_event(0, sample=16000), now=1.2)          # a frame took 1.2 s: no step down
    q.feed({"type": "live_stats", "delay_s": 0.9, "dropped": 0}, now=1.3)
    assert q.delay_s == pytest.approx(1.3 + lp.DELAY_MARGIN_S)


def test_remaining_is_the_buffered_tail():
    p = lp.Player()
    p.feed(started(0.3), now=0.0)
    for k in range(10):
        p.feed(frame_event(k, sample=int(0.5 * 16000)), now=0.5)
    D = p.delay_s
    assert p.remaining(D) == pytest.approx(9 / 25)
    assert p.remaining(D + 1.0) == 0.0
