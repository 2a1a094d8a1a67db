"""A live session end to end in-process (engine/pipeline/live.py + engine/live/session.py, sources.py):
paced audio -> events in order, stop/cancel mid-window, the microphone's failures (fake input stream),
with a scripted stream (tests/engine/live_fakes.py) so only the session machinery is under test."""
from __future__ import annotations

import importlib.abc
import io
import json
import sys
import threading
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from engine.jobs import LiveJob
from engine.live.sources import AudioDeviceError, MicSource, PcmSource, list_input_devices
from engine.motion.npz import load_motion
from engine.pipeline.context import Context
from engine.pipeline.live import run_live
from engine.contract.protocol import EventWriter
from engine.runner import Reporter, run_job
from engine_testkit import speech_clip
from live_fakes import FakeSoundDevice, FakeStream


def _live(weights: Path, tmp: Path, stream: Any, *, src: Any = None, on_session: Callable[..., None] | None = None,
          on_reporter: Callable[[Reporter], None] | None = None, **args: Any) -> tuple[int, list[dict[str, Any]]]:
    buf = io.StringIO()
    rep = Reporter(None, job="live-t", writer=EventWriter(buf), quiet=True)
    rep.command = "live"
    if on_reporter is not None:
        on_reporter(rep)
    job = LiveJob.from_dict({"out": str(tmp / "take.npz"), "weights": str(weights), "device": "cpu", **args})
    rc = run_job(rep, lambda r: run_live(job, Context(r), on_session=on_session, stream_factory=lambda *a: stream,
                                         source_factory=None if src is None else (lambda j, p: src))).code
    return rc, [json.loads(line) for line in buf.getvalue().splitlines()]


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def test_paced_file_streams_every_frame_in_order_and_the_take_matches(synthetic_tiny_joyvasa: Path,
                                                                      tmp_path: Path) -> None:
    import socket

    clip = speech_clip(tmp_path, 1.3)
    stream = FakeStream(hop=5, lookahead=2)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    try:
        rc, events = _live(synthetic_tiny_joyvasa, tmp_path, stream, audio=str(clip), pace="realtime", hop=5,
                           lookahead=2, livelink=f"127.0.0.1:{rx.getsockname()[1]}")
        assert rc == 0, events[-1]
        sent = [int.from_bytes(rx.recv(65536)[-(4 * 61 + 1 + 16):][:4], "big", signed=True)   # frame number
                for _ in range(sum(e["type"] == "live_frame" for e in events))]
    finally:
        rx.close()
    assert sent == list(range(len(sent))), "Live Link Face got every frame, in order, paced"
    kinds = [e["type"] for e in events]
    assert kinds[0] == "hello" and kinds[-1] == "done"
    assert kinds.index("live_started") < kinds.index("live_frame")
    started = events[kinds.index("live_started")]
    assert started["rate"] == 16000 and started["fps"] == 25 and started["source"] == "file" and started["delay_s"] > 0
    frames = [e for e in events if e["type"] == "live_frame"]
    n = len(frames)
    assert [f["frame"] for f in frames] == list(range(n)) and n == -(-int(1.3 * 16000) // 640)
    assert all(b["t"] > a["t"] and b["sample"] >= a["sample"] and b["wall"] >= a["wall"]
               for a, b in zip(frames, frames[1:]))
    assert frames[0]["sample"] < 1.3 * 16000, "paced: the first frames came before the whole file arrived"
    assert any(e["type"] == "live_stats" for e in events)
    done = events[-1]
    assert set(done["outputs"]) == {"motion_npz", "audio_wav"} and done["live"]["frames"] == n
    take = load_motion(done["outputs"]["motion_npz"])
    assert take.n_frames == n
    for f in (frames[0], frames[n // 2], frames[-1]):
        k = f["frame"]
        np.testing.assert_allclose(f["motion"]["exp"], take.exp[k].reshape(63), atol=1e-6)
        np.testing.assert_allclose([f["motion"][a] for a in ("pitch", "yaw", "roll")],
                                   [take.pitch[k], take.yaw[k], take.roll[k]], atol=1e-5)
        np.testing.assert_allclose(f["motion"]["trans"], take.t[k], atol=1e-6)
    import soundfile as sf

    original, _ = sf.read(str(clip), dtype="int16")
    np.testing.assert_array_equal(_wav(Path(done["outputs"]["audio_wav"])), original)


def _stop_or_cancel_mid_window(weights: Path, tmp: Path, cancel: bool) -> tuple[int, list[dict[str, Any]]]:
    entered = threading.Event()
    stream = FakeStream(hop=5, lookahead=2, delay=0.3, entered=entered)
    pcm = PcmSource()
    pcm.queue.put(np.linspace(-0.5, 0.5, 16000, dtype=np.float32))
    holder: dict[str, Any] = {}

    def act() -> None:
        assert entered.wait(30)
        if cancel:
            holder["rep"].cancel.set()
        else:
            holder["session"].stop()

    t = threading.Thread(target=act)
    t.start()
    rc, events = _live(weights, tmp, stream, src=pcm,
                       on_session=lambda s: holder.__setitem__("session", s),
                       on_reporter=lambda r: holder.__setitem__("rep", r), **{"source": "pcm"})
    t.join()
    return rc, events


def test_stop_mid_window_writes_the_whole_take(synthetic_tiny_joyvasa: Path, tmp_path: Path) -> None:
    rc, events = _stop_or_cancel_mid_window(synthetic_tiny_joyvasa, tmp_path, cancel=False)
    assert rc == 0 and events[-1]["type"] == "done", events[-1]
    frames = [e for e in events if e["type"] == "live_frame"]
    assert [f["frame"] for f in frames] == list(range(25))      # 1 s of audio: every frame, flushed
    assert load_motion(tmp_path / "take.npz").n_frames == 25
    assert len(_wav(tmp_path / "take.wav")) == 16000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz", "take.wav"]


def test_cancel_mid_window_writes_nothing(synthetic_tiny_joyvasa: Path, tmp_path: Path) -> None:
    rc, events = _stop_or_cancel_mid_window(synthetic_tiny_joyvasa, tmp_path, cancel=True)
    assert rc == 130 and events[-1]["type"] == "cancelled"
    assert list(tmp_path.iterdir()) == [], "a cancelled take leaves no file, whole or partial"


# -- the microphone, through a fake sounddevice --------------------------------------------------------
def _mic(weights: Path, tmp: Path, sd: FakeSoundDevice, script: Callable[[FakeSoundDevice], None],
         device: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    source = MicSource(device, backend=sd)
    t = threading.Thread(target=script, args=(sd,))
    t.start()
    try:
        return _live(weights, tmp, FakeStream(hop=5, lookahead=2), src=source, source="mic", mic=device)
    finally:
        t.join()


def _wait_stream(sd: FakeSoundDevice) -> Any:
    for _ in range(600):
        if sd.streams and sd.streams[0].active:
            return sd.streams[0]
        threading.Event().wait(0.05)
    raise AssertionError("the session never opened the microphone")


def test_mic_missing_device_is_audio_device_and_writes_nothing(synthetic_tiny_joyvasa: Path, tmp_path: Path) -> None:
    sd = FakeSoundDevice(devices=[{"name": "Speakers", "max_input_channels": 0, "default_samplerate": 48000.0}])
    rc, events = _mic(synthetic_tiny_joyvasa, tmp_path, sd, lambda sd: None)
    assert rc == 1 and events[-1]["type"] == "error" and events[-1]["code"] == "audio_device"
    assert "doctor" in events[-1]["message"] and list(tmp_path.iterdir()) == []
    assert list_input_devices(sd) == [] and list_input_devices(FakeSoundDevice())[0]["name"] == "Fake USB Mic"


def test_mic_unplugged_mid_session_is_audio_device_and_closes_cleanly(synthetic_tiny_joyvasa: Path,
                                                                      tmp_path: Path) -> None:
    def script(sd: FakeSoundDevice) -> None:
        stream = _wait_stream(sd)
        for _ in range(25):                       # 0.5 s of audio in 20 ms blocks, then the cable goes
            stream.deliver(np.full(320, 0.1, np.float32))
        stream.unplug()

    sd = FakeSoundDevice()
    rc, events = _mic(synthetic_tiny_joyvasa, tmp_path, sd, script, device="usb")
    assert rc == 1 and events[-1]["code"] == "audio_device" and "unplugged" in events[-1]["message"]
    assert sd.streams[0].kw["samplerate"] == 16000 and sd.streams[0].kw["channels"] == 1
    assert sd.streams[0].closed and list(tmp_path.iterdir()) == []
    assert any(e["type"] == "live_started" and e["source"] == "mic" for e in events)


def test_mic_that_goes_silent_is_reported(tmp_path: Path) -> None:
    """A device that stops calling back without finishing (some USB drivers) is caught by check()."""
    now = [0.0]
    src = MicSource(None, backend=FakeSoundDevice(), clock=lambda: now[0])
    src.start()
    src.check()
    now[0] = 5.0
    src.check()
    with pytest.raises(AudioDeviceError, match="no audio"):
        src.queue.get(0.01)
    src.close()


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """What `import sounddevice` does on Linux without libportaudio2."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:  # noqa: ARG002
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_portaudio_absent_is_portaudio_missing_with_the_linux_hint(synthetic_tiny_joyvasa: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio()] + sys.meta_path)
    buf = io.StringIO()
    rep = Reporter(None, job="mic", writer=EventWriter(buf), quiet=True)
    rep.command = "live"
    job = LiveJob.from_dict({"out": str(tmp_path / "take.npz"), "weights": str(synthetic_tiny_joyvasa),
                             "device": "cpu", "source": "mic"})
    rc = run_job(rep, lambda r: run_live(job, Context(r), stream_factory=lambda *a: FakeStream())).code
    last = json.loads(buf.getvalue().splitlines()[-1])
    assert rc == 1 and last["code"] == "portaudio_missing" and "apt-get install libportaudio2" in last["message"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, words", [
    ({"source": "file"}, "--audio"),
    ({"source": "pcm", "audio": "a.wav"}, "only for source file"),
    ({"source": "pcm", "mic": "usb"}, "only for source mic"),
    ({"source": "pcm", "hop": 0}, "--hop"),
    ({"source": "pcm", "hop": 60, "lookahead": 50}, "at most 100"),
    ({"source": "pcm", "schedule": "offline", "hop": 25}, "--hop 100 --lookahead 0"),
    ({"source": "pcm", "livelink": "localhost:99999"}, "HOST:PORT"),
    ({"source": "pcm", "vmc": "nope"}, "HOST:PORT"),
    ({"source": "radio"}, "--source"),
    ({"source": "pcm", "out": "take.wav"}, ".npz"),
])
def test_bad_live_jobs_are_bad_requests(args: dict[str, Any], words: str) -> None:
    from engine.errors import BadRequest

    with pytest.raises(BadRequest, match=words.replace("(", r"\(").replace(".", r"\.")):
        LiveJob.from_dict({"out": "take.npz", **args})


def test_live_job_defaults_and_host_ports() -> None:
    from engine.jobs import parse_host_port

    job = LiveJob.from_dict({"out": "dir/take.npz", "source": "mic", "mic": 2, "vmc": ":39539"})
    assert job.mic == "2" and job.wav_path == "dir/take.wav" and job.to_dict()["vmc"] == ":39539"
    assert parse_host_port("--vmc", ":39539") == ("127.0.0.1", 39539)
    assert parse_host_port("--livelink", "11111") == ("127.0.0.1", 11111)
    assert parse_host_port("--livelink", "192.168.1.5:11111") == ("192.168.1.5", 11111)


def test_doctor_lists_microphones_or_says_why_not() -> None:
    from engine.live.sources import PortAudioMissing, microphones_report

    report = microphones_report(FakeSoundDevice())
    assert [m["name"] for m in report["devices"]] == ["Fake USB Mic"] and report["devices"][0]["default"]

    class Broken:
        def query_devices(self) -> Any:
            raise PortAudioMissing("no PortAudio")

    assert microphones_report(Broken())["error"] == "portaudio_missing"


def test_bench_live_runs_and_prints_its_table(synthetic_tiny_joyvasa: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`engine bench live` end to end on tiny weights (numbers are printed, never asserted)."""
    from engine.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "live", "--weights", str(synthetic_tiny_joyvasa), "--settings", "10:2", "--pace", "fast",
                 "--seconds", "1", "--no-offline", "--threads", "1", "--json", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("H= 10 F= 2 fast") and "latency med/p95/max" in line
    row = json.loads(out.read_text())[0]
    assert row["frames"] == row["events"] >= 25 and row["windows"] >= 2
