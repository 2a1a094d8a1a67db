"""Protocol writer/parser, command runner exit codes, atomic outputs, motion file schema."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from engine.contract import protocol
from engine.errors import AudioError, Cancelled
from engine.fileio import atomic_path, frames_output
from engine.motion.npz import MotionData, MotionFileError, load_motion, save_motion
from engine.runner import Done, run_protocol_command


def _events(text: str) -> list[dict]:
    return [protocol.parse_event(line) for line in text.splitlines() if line.strip()]


def test_event_writer_numbers_and_parses_back() -> None:
    buf = io.StringIO()
    w = protocol.EventWriter(buf, job="j1")
    w.emit("hello", engine_version="x")
    w.emit("progress", stage="motion", done=1, total=3, unit="window")
    events = _events(buf.getvalue())
    assert [e["seq"] for e in events] == [0, 1]
    assert all(e["v"] == protocol.PROTOCOL_MAJOR and e["job"] == "j1" for e in events)
    assert events[1]["done"] == 1


def test_parse_event_refuses_other_major_version_and_garbage() -> None:
    with pytest.raises(protocol.ProtocolError, match="protocol v2"):
        protocol.parse_event(json.dumps({"v": 2, "type": "hello"}))
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_event("Traceback (most recent call last):")
    assert protocol.parse_event("   \n") is None
    # unknown fields and event types are accepted (forward compatible)
    assert protocol.parse_event('{"v":1,"type":"future","x":1}')["type"] == "future"


def test_cancel_requests() -> None:
    assert protocol.is_cancel_request("cancel\n")
    assert protocol.is_cancel_request('{"v":1,"type":"cancel"}')
    assert not protocol.is_cancel_request('{"v":1,"type":"ping"}')
    assert not protocol.is_cancel_request("cancelled")


def _run(body, monkeypatch, cleanup=None) -> tuple[int, list[dict]]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = run_protocol_command("test", "json", body, cleanup=cleanup, quiet=True)
    return code, _events(out.getvalue())


def test_runner_success_error_cancel(monkeypatch) -> None:
    def ok(rep):
        rep.hello("test")
        rep.progress("motion", 1, 2, "window")
        print("stray library print")  # must not reach the protocol channel
        return Done({"motion_npz": "m.npz"})

    code, events = _run(ok, monkeypatch)
    assert code == protocol.EXIT_OK
    assert [e["type"] for e in events] == ["hello", "progress", "done"]
    assert events[-1]["outputs"] == {"motion_npz": "m.npz"}
    assert events[-1]["peak_mem"]["host_mb"] > 0

    cleaned = []

    def bad(rep):
        raise AudioError("audio file x.wav is empty")

    code, events = _run(bad, monkeypatch, cleanup=lambda: cleaned.append(1))
    assert code == protocol.EXIT_ERROR and cleaned == [1]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "audio_invalid"

    def cancelled(rep):
        rep.cancel.set()
        rep.progress("render", 3, 10, "frame")  # checkpoint raises
        raise AssertionError("not reached")

    code, events = _run(cancelled, monkeypatch)
    assert code == protocol.EXIT_CANCELLED
    assert events[-1]["type"] == "cancelled" and events[-1]["at"] == {"stage": "render", "done": 3}

    def crash(rep):
        raise RuntimeError("boom")

    code, events = _run(crash, monkeypatch)
    assert code == protocol.EXIT_ERROR and events[-1]["code"] == "internal"


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise Cancelled("render", 1)
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete" and len(list(tmp_path.iterdir())) == 1

    frames = tmp_path / "frames"
    with pytest.raises(RuntimeError):
        with frames_output(frames) as d:
            (d / "a.png").write_bytes(b"x")
            raise RuntimeError("fail")
    assert not frames.exists() and len(list(tmp_path.iterdir())) == 1


def _motion(n: int = 4) -> MotionData:
    rng = np.random.default_rng(0)
    return MotionData(25.0, rng.normal(size=(n, 21, 3)).astype(np.float32), np.ones(n, np.float32),
                      np.zeros((n, 3), np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32),
                      np.zeros(n, np.float32), np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
                      rng.normal(size=(n, 73)).astype(np.float32), meta={"seed": 7, "sampler": "ddim"})


def test_motion_file_round_trip_and_validation(tmp_path: Path) -> None:
    path = save_motion(tmp_path / "m.npz", _motion())
    with np.load(path, allow_pickle=False) as z:
        assert str(z["schema"]) == "joyvasa.motion" and int(z["schema_version"]) == 1
    m = load_motion(path)
    assert m.n_frames == 4 and m.meta["seed"] == 7 and m.meta["sampler"] == "ddim"
    np.testing.assert_array_equal(m.exp, _motion().exp)

    broken = _motion()
    broken.R[1] *= 2.0
    with pytest.raises(MotionFileError, match="orthonormal"):
        save_motion(tmp_path / "bad.npz", broken)
    assert not (tmp_path / "bad.npz").exists()
    nan = _motion()
    nan.yaw[0] = np.nan
    with pytest.raises(MotionFileError, match="NaN"):
        save_motion(tmp_path / "nan.npz", nan)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MotionFileError, match="not a readable"):
        load_motion(tmp_path / "junk.npz")
