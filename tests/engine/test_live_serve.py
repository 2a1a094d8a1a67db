"""The warm worker's live session (engine/serve.py): live_start / push_pcm / live_stop while stdin is
still read; every bad live request is one non-fatal bad_request and the session goes on; after the
session the worker serves ordinary runs (an export of the take it just wrote). In-process, with a
scripted stream (tests/engine/live_fakes.py) in place of the sampler."""
from __future__ import annotations

import base64
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine.pipeline.live as live_pipeline
from engine.serve import Worker
from live_fakes import FakeStream


class InProcessWorker:
    def __init__(self) -> None:
        r, w = os.pipe()
        self.stdin_w = os.fdopen(w, "w")
        self.out = _Lines()
        self.worker = Worker(os.fdopen(r, "rb"), self.out)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.worker.serve, daemon=True)
        self.thread.start()

    def send(self, obj: Any) -> None:
        self.stdin_w.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.stdin_w.flush()

    def close(self) -> None:
        self.stdin_w.close()
        self.thread.join(60)
        assert not self.thread.is_alive()


class _Lines(io.TextIOBase):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self._buf = ""

    def write(self, s: str) -> int:
        with self.cond:
            self._buf += s
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                self.events.append(json.loads(line))
            self.cond.notify_all()
        return len(s)

    def wait(self, pred: Any, timeout: float = 60) -> dict[str, Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(e) for e in self.events), timeout), self.events[-5:]
            return next(e for e in self.events if pred(e))


def pcm16(seconds: float, amp: float = 0.2) -> str:
    n = int(seconds * 16000)
    x = (amp * 32767 * np.sin(np.arange(n) * 2 * np.pi * 150 / 16000)).astype("<i2")
    return base64.b64encode(x.tobytes()).decode()


def _end(job: str) -> Any:
    """The job's last event: done, cancelled or a fatal error (a non-fatal bad_request does not end it)."""
    return lambda e: e.get("job") == job and (e["type"] in ("done", "cancelled") or e["type"] == "error" and e["fatal"])


def _errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "error"]


def test_live_session_bad_requests_then_an_ordinary_run(synthetic_tiny_joyvasa: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_pipeline, "open_stream", lambda *a: FakeStream(hop=5, lookahead=2))
    w = InProcessWorker()
    take = tmp_path / "take.npz"
    try:
        w.send({"v": 1, "type": "live_start", "job": "live-1",
                "args": {"source": "pcm", "out": str(take), "weights": str(synthetic_tiny_joyvasa), "device": "cpu",
                         "hop": 5, "lookahead": 2}})
        w.send({"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": pcm16(0.5), "rate": 16000})
        w.out.wait(lambda e: e["type"] == "live_started")
        bad = [
            {"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": pcm16(0.1), "rate": 44100},       # wrong rate
            '{"v":1,"type":"push_pcm","job":"live-1","pcm16":"AAAA","rate":NaN}',                  # NaN
            {"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": pcm16(2.0), "rate": 16000},       # > 1 s
            {"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": "not base64!", "rate": 16000},
            {"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": "AA==", "rate": 16000},           # odd bytes
            {"v": 1, "type": "push_pcm", "job": "other", "pcm16": pcm16(0.1), "rate": 16000},        # wrong job
            {"v": 1, "type": "push_pcm", "job": "live-1", "rate": 16000},                            # no pcm16
            {"v": 1, "type": "live_start", "job": "live-2", "args": {"source": "pcm", "out": str(tmp_path / "b.npz")}},
            {"v": 1, "type": "run", "job": "r1", "command": "doctor", "args": {"no_load": True}},
            {"v": 1, "type": "push_pcm", "pcm16": pcm16(0.1), "rate": 16000},                         # no job
        ]
        for line in bad:
            w.send(line)
        w.send({"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": pcm16(0.5), "rate": 16000})
        w.out.wait(lambda e: len(_errors(w.out.events)) >= len(bad))
        w.send({"v": 1, "type": "live_stop", "job": "live-1"})
        done = w.out.wait(_end("live-1"))
        assert done["type"] == "done", done
        errors = _errors(w.out.events)
        assert len(errors) == len(bad) and all(e["code"] == "bad_request" and e["fatal"] is False for e in errors)
        messages = " | ".join(e["message"] for e in errors)
        for words in ("16000", "NaN", "1 s", "base64", "even", "'other'", "pcm16", "already running",
                      "live_stop", "job"):
            assert words in messages, words
        frames = [e for e in w.out.events if e["type"] == "live_frame"]
        assert [f["frame"] for f in frames] == list(range(25)), "1 s pushed (the bad blocks dropped): 25 frames"
        assert done["outputs"] == {"motion_npz": str(take), "audio_wav": str(tmp_path / "take.wav")}
        # after the session: push_pcm has no session; an ordinary run works on the take
        w.send({"v": 1, "type": "push_pcm", "job": "live-1", "pcm16": pcm16(0.1), "rate": 16000})
        w.send({"v": 1, "type": "run", "job": "exp", "command": "export",
                "args": {"motion": str(take), "format": "livelinkface-csv", "out": str(tmp_path / "take.csv")}})
        end = w.out.wait(lambda e: e.get("job") == "exp" and e["type"] in ("done", "error"))
        assert end["type"] == "done", end
        assert "no live session" in _errors(w.out.events)[-1]["message"]
        rows = (tmp_path / "take.csv").read_text().splitlines()
        assert len(rows) == 1 + 25 and rows[0].startswith("Timecode,BlendShapeCount,")
    finally:
        w.close()


def test_cancel_ends_a_live_session_and_writes_nothing(synthetic_tiny_joyvasa: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_pipeline, "open_stream", lambda *a: FakeStream(hop=5, lookahead=2, delay=0.2))
    w = InProcessWorker()
    try:
        w.send({"v": 1, "type": "live_start", "job": "c1",
                "args": {"source": "pcm", "out": str(tmp_path / "take.npz"), "weights": str(synthetic_tiny_joyvasa),
                         "device": "cpu"}})
        w.send({"v": 1, "type": "push_pcm", "job": "c1", "pcm16": pcm16(1.0), "rate": 16000})
        w.out.wait(lambda e: e["type"] == "live_frame")
        w.send({"v": 1, "type": "cancel", "job": "c1"})
        end = w.out.wait(_end("c1"))
        assert end["type"] == "cancelled" and list(tmp_path.iterdir()) == []
        w.send({"v": 1, "type": "run", "job": "r", "command": "live", "args": {}})
        err = w.out.wait(lambda e: e.get("job") == "r")
        assert err["code"] == "bad_request" and "live_start" in err["message"]
    finally:
        w.close()
