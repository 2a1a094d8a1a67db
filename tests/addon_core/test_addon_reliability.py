"""Add-on side of issue #13 (defect 9), bpy-free: interpreter preference, hello protocol check,
long event lines, the watchdog, and the rendered-file check."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core import media_check as mc
from joyvasa_blender.core import requests
from joyvasa_blender.core.run_state import JobState
from joyvasa_blender.core.contract.protocol import PROTOCOL_MAJOR, hello_problem

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
import fake_engine  # noqa: E402

HELLO = {"type": "hello", "engine_version": "fake", "protocol": [1, 0], "python": "3.11", "torch": None,
         "device": "cpu", "dtype": "float32", "command": "motion"}


@pytest.fixture()
def fake_python(tmp_path: Path) -> str:
    return str(fake_engine.write_wrapper(tmp_path / "fakepython"))


def _transcript(tmp_path: Path, lines: list[dict]) -> str:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


def _run(fake_python: str, tmp_path: Path, transcript: str, **run_kw) -> tuple[JobState, int, ec.EngineProcess]:
    env = ec.clean_env({"JOYVASA_FAKE_TRANSCRIPT": transcript})
    request = requests.job_dict("motion", audio="a.wav", out=str(tmp_path / "m.npz"))
    job = JobState(kind="motion")
    job.start()
    proc = ec.EngineProcess(requests.one_shot_argv(fake_python), env=env, stdin_text=requests.to_line(request)).start()
    rc = proc.run_sync(job.feed, timeout=60, **run_kw)
    job.finish(rc, proc.stderr_tail(), proc.cancel_requested)
    return job, rc, proc


# -- engine Python preference ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "not_python", "folder"])
def test_a_wrong_interpreter_preference_is_an_error_naming_it(kind: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("JOYVASA_ENGINE_PYTHON", raising=False)
    if kind == "missing":
        pref = tmp_path / "venv" / "bin" / "python"
    elif kind == "not_python":
        pref = tmp_path / "python"
        pref.write_text("#!/bin/sh\necho not python >&2\nexit 3\n")
        pref.chmod(0o755)
    else:
        pref = tmp_path
    python, why = ec.detect_interpreter(pref=str(pref))
    assert python is None, f"fell back to {python} ({why})"
    assert "Engine Python" in why and str(pref) in why


def test_a_wrong_environment_variable_is_an_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", str(tmp_path / "nope"))
    python, why = ec.detect_interpreter()
    assert python is None and "JOYVASA_ENGINE_PYTHON" in why


def test_a_working_preference_is_used(fake_python: str, monkeypatch) -> None:
    monkeypatch.delenv("JOYVASA_ENGINE_PYTHON", raising=False)
    python, why = ec.detect_interpreter(pref=fake_python)
    assert python == fake_python and why.startswith("preferences")


# -- protocol ----------------------------------------------------------------------------------------

def test_hello_protocol_check() -> None:
    assert hello_problem(HELLO) is None
    assert hello_problem(dict(HELLO, protocol=[PROTOCOL_MAJOR, 99])) is None  # newer minor: fine
    msg = hello_problem(dict(HELLO, protocol=[PROTOCOL_MAJOR + 1, 0]))
    assert msg and "update both" in msg and "newer" in msg
    assert "update" in (hello_problem(dict(HELLO, protocol=None)) or "")


def test_newer_major_in_hello_stops_the_engine(fake_python: str, tmp_path: Path) -> None:
    t = _transcript(tmp_path, [dict(HELLO, protocol=[PROTOCOL_MAJOR + 1, 0]), {"_fake": "hang"}])
    start = time.monotonic()
    job, rc, _ = _run(fake_python, tmp_path, t)
    assert job.state == "failed" and job.error_code == "protocol" and "update both" in job.message
    assert time.monotonic() - start < 30  # stopped, not left hanging


def test_long_event_lines_are_read_whole(fake_python: str, tmp_path: Path) -> None:
    long_message = "x" * (300 * 1024)   # 300 KiB: well over the old 64 KiB limit
    t = _transcript(tmp_path, [HELLO, {"type": "warning", "code": "long", "message": long_message},
                               {"type": "error", "code": "bad_request", "message": "y" * 100_000, "fatal": True},
                               {"_fake": "exit", "code": 1}])
    job, rc, _ = _run(fake_python, tmp_path, t)
    assert rc == 1 and job.state == "failed"
    assert len(job.warnings) == 1 and long_message in job.warnings[0]
    assert job.error_code == "bad_request" and len(job.error_message) == 100_000


# -- watchdog ----------------------------------------------------------------------------------------

def test_watchdog_stops_a_silent_engine_and_reports_it(fake_python: str, tmp_path: Path) -> None:
    start = time.monotonic()
    job, rc, proc = _run(fake_python, tmp_path, "hang", idle_timeout=1.0)
    assert proc.watchdog_fired and rc in (130, -9)
    assert job.state == "failed" and job.error_code == "hang" and "watchdog" in job.message
    assert time.monotonic() - start < 30


def test_watchdog_leaves_a_slow_but_talking_engine_alone(fake_python: str, tmp_path: Path) -> None:
    lines: list[dict] = [HELLO]
    for i in range(6):
        lines += [{"_fake": "sleep", "s": 0.4},
                  {"type": "progress", "stage": "motion", "done": i, "total": 6, "unit": "window", "eta_s": None,
                   "rate": None}]
    lines += [{"_fake": "write_motion"}, {"type": "done", "outputs": {"motion_npz": "$OUT"}, "timings": {},
                                          "peak_mem": {"host_mb": 1}}]
    job, rc, proc = _run(fake_python, tmp_path, _transcript(tmp_path, lines), idle_timeout=1.0)
    assert rc == 0 and job.state == "done" and not proc.watchdog_fired


def test_watchdog_pauses_between_requests() -> None:
    """A warm worker waiting for its next request is idle, not hung."""
    dog = ec.Watchdog(0.05)
    assert not dog.expired()          # no request in flight
    dog.start()
    time.sleep(0.1)
    assert dog.expired()
    dog.stop()                        # request finished: the worker idles
    time.sleep(0.1)
    assert not dog.expired()
    assert not ec.Watchdog(0).expired()


def test_watchdog_seconds_from_env_or_preference(monkeypatch) -> None:
    monkeypatch.delenv("JOYVASA_WATCHDOG_S", raising=False)
    assert ec.watchdog_seconds() == ec.DEFAULT_WATCHDOG_S and 60 <= ec.DEFAULT_WATCHDOG_S <= 600
    assert ec.watchdog_seconds(42) == 42
    monkeypatch.setenv("JOYVASA_WATCHDOG_S", "7")
    assert ec.watchdog_seconds(42) == 7


# -- rendered file check -------------------------------------------------------------------------------

def _wav(path: Path, seconds: float, sr: int = 16000) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(b"\0\0" * int(seconds * sr))
    return path


def test_video_matching_the_audio_passes(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    fake_engine.write_video(str(video), 24, 48)
    info = mc.verify_render(video, 24, _wav(tmp_path / "a.wav", 2.0))
    assert info.frames == 48 and info.audio_s is None and abs(info.fps - 24) < 0.5


@pytest.mark.parametrize("frames,ok", [(47, True), (49, True), (45, False), (12, False)])
def test_frame_count_must_match_the_audio_within_one_frame(tmp_path: Path, frames: int, ok: bool) -> None:
    video = tmp_path / "v.mp4"
    fake_engine.write_video(str(video), 24, frames)
    audio = _wav(tmp_path / "a.wav", 2.0)
    if ok:
        mc.verify_render(video, 24, audio)
    else:
        with pytest.raises(mc.MediaError, match=f"{frames} frames"):
            mc.verify_render(video, 24, audio)


@pytest.mark.parametrize("content", [b"", b"not a video at all", "truncated"])
def test_unreadable_files_are_refused(tmp_path: Path, content) -> None:
    video = tmp_path / "v.mp4"
    if content == "truncated":
        fake_engine.write_video(str(tmp_path / "full.mp4"), 24, 48)
        data = (tmp_path / "full.mp4").read_bytes()
        video.write_bytes(data[: len(data) // 2])
    else:
        video.write_bytes(content)
    with pytest.raises(mc.MediaError, match="v.mp4"):
        mc.verify_render(video, 24, _wav(tmp_path / "a.wav", 2.0))
    with pytest.raises(mc.MediaError, match="does not exist"):
        mc.verify_render(tmp_path / "missing.mp4", 24)


def test_addon_only_codes_are_in_the_errors_page() -> None:
    """The add-on adds three codes of its own to the engine's (jobs.py / engine_client.py);
    docs/errors.md (linked from the README) lists them."""
    page = (TESTS.parent / "docs" / "errors.md").read_text(encoding="utf-8")
    for code in ("hang", "protocol", "crash"):
        assert f"| `{code}` (add-on) |" in page, code
