"""The add-on's warm engine (core/worker.py) against the fake worker and against the real engine."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core import requests
from joyvasa_blender.core.run_state import JobState
from joyvasa_blender.core.worker import EngineWorker, worker_for

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
import fake_engine  # noqa: E402


@pytest.fixture()
def fake_python(tmp_path):
    return str(fake_engine.write_wrapper(tmp_path / "fakepython"))


def _worker(python, tmp_path, transcript=None, cwd=None, **env):
    log = tmp_path / "argv.log"
    extra = {"JOYVASA_FAKE_ARGV_LOG": str(log), **env}
    if transcript:
        extra["JOYVASA_FAKE_TRANSCRIPT"] = transcript
    return EngineWorker(python, cwd, ec.clean_env(extra)), log


def _take(worker, command, args, cancel_after=None, timeout=60):
    job = JobState(kind=command)
    job.start()
    handle = worker.submit(command, args)
    t0 = time.monotonic()
    rc = handle.run_sync(job.feed, should_cancel=(lambda: time.monotonic() - t0 > cancel_after)
                         if cancel_after else None, timeout=timeout)
    job.finish(rc, handle.stderr_tail(), handle.cancel_requested)
    return job, rc


def _processes(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)[0] == "serve")


def test_two_takes_one_process_and_eof_exit(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path)
    for seed in (1, 2):
        out = tmp_path / f"m{seed}.npz"
        job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(out), "seed": seed})
        assert rc == 0 and job.state == "done" and out.is_file(), job.report_text()
        assert job.outputs["motion_npz"] == str(out)
    assert w.state == "ready" and w.starts == 1 and _processes(log) == 1
    assert w.stop() == 0 and w.state == "stopped"


def test_error_event_keeps_the_worker(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path, "error_weights")
    job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m.npz")})
    assert rc == 1 and job.state == "failed" and job.error_code == "weights_missing"
    assert w.alive() and w.stop() == 0


def test_cancel_then_next_take_in_the_same_worker(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path, "hang")
    job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m.npz")}, cancel_after=0.5)
    assert job.state == "cancelled" and rc == 130 and "nothing was changed" in job.message
    assert w.alive() and w.starts == 1
    w.stop()


def test_crash_is_reported_with_stderr_and_the_worker_restarts(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path, "crash")
    job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m.npz")})
    assert job.state == "failed" and job.error_code == "crash" and rc == 139
    assert "simulated segfault" in job.report_text() and w.state == "crashed"
    w.env["JOYVASA_FAKE_TRANSCRIPT"] = "motion_ok"        # the next request gets a fresh worker
    job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m2.npz")})
    assert rc == 0 and job.state == "done" and w.starts == 2 and _processes(log) == 2
    w.stop()


def test_killed_worker_mid_request_is_reported_and_replaced(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path, "hang")
    handle = w.submit("motion", {"audio": "a.wav", "out": str(tmp_path / "m.npz")})
    job = JobState(kind="motion")
    job.start()
    deadline = time.monotonic() + 30
    while not any(e.get("type") == "progress" for e in [job.feed(ev) or ev for ev in handle.drain()]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(w.proc.pid, 9)                                 # as if the OS killed it (OOM killer...)
    rc = handle.run_sync(job.feed, timeout=30)
    job.finish(rc, handle.stderr_tail(), handle.cancel_requested)
    assert job.state == "failed" and job.error_code == "crash" and rc != 0
    w.env["JOYVASA_FAKE_TRANSCRIPT"] = "motion_ok"
    job, rc = _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m2.npz")})
    assert rc == 0 and w.starts == 2
    w.stop()


def test_release_idle_timeout_and_preference_change(fake_python, tmp_path):
    w, log = _worker(fake_python, tmp_path)
    _take(w, "motion", {"audio": "a.wav", "out": str(tmp_path / "m.npz")})
    assert w.release()
    deadline = time.monotonic() + 10
    while "release" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "release" in log.read_text()
    assert not w.stop_if_idle(3600) and w.alive()
    w.last_used -= 10
    assert w.stop_if_idle(5) and w.state == "stopped"
    same = worker_for(w, w.argv[0], w.cwd, w.env)
    assert same is w
    other = worker_for(w, w.argv[0], w.cwd, {**w.env, "JOYVASA_WEIGHTS": "/elsewhere"})
    assert other is not w


def test_doctor_through_the_worker(fake_python, tmp_path):
    w, _ = _worker(fake_python, tmp_path)
    events = []
    rc = w.submit("doctor", {"weights": "/w"}).run_sync(events.append, timeout=30)
    done = [e for e in events if e["type"] == "done"][-1]
    assert rc == 0 and done["report"]["ok"] is True
    assert any("fake worker" in line for line in ec.summarize_doctor(done["report"]))
    w.stop()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_synthetic_weights
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp("worker_tiny")
    assert make_synthetic_weights.main(["--config", "tiny", "--out", str(root)]) == 0
    return root


@pytest.mark.slow
def test_real_engine_two_takes_load_once(tiny_weights, tmp_path):
    """The add-on's worker against the real ``python -m engine serve`` on tiny weights."""
    import soundfile as sf

    wave, sr = sf.read(str(REPO / "examples" / "speech.wav"), dtype="float32")
    audio = tmp_path / "line.wav"
    sf.write(str(audio), wave[: sr], sr)
    env = ec.clean_env({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    w = EngineWorker(sys.executable, REPO, env)
    stages = []
    for seed in (1, 2):
        job = JobState(kind="motion")
        job.start()
        args = requests.job_dict("motion", {"seed": seed, "sampler": "ddim", "steps": 2},
                                 {"weights": str(tiny_weights), "device": "cpu"}, audio=str(audio),
                                 out=str(tmp_path / f"m{seed}.npz"))
        seen = []
        rc = w.submit("motion", args).run_sync(lambda ev: (seen.append(ev), job.feed(ev)), timeout=600)
        job.finish(rc, w.stderr_tail(), False)
        assert rc == 0 and job.state == "done", job.report_text()
        stages.append({e.get("stage") for e in seen if e["type"] == "progress"})
    assert "load" in stages[0] and "load" not in stages[1]     # the second take reused the networks
    assert w.starts == 1 and w.stop() == 0
