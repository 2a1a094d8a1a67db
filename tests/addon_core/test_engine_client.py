"""Engine client + job state against the fake engine (no bpy)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core import requests
from joyvasa_blender.core.run_state import JobState

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
import fake_engine  # noqa: E402


@pytest.fixture()
def fake_python(tmp_path):
    return str(fake_engine.write_wrapper(tmp_path / "fakepython"))


def run(fake_python, tmp_path, transcript, command="motion", cancel_after=None):
    env = ec.clean_env({"JOYVASA_FAKE_TRANSCRIPT": transcript})
    out = tmp_path / ("m.npz" if command == "motion" else "v.mp4")
    request = requests.job_dict(command, {"seed": 3}, {"device": "cpu"}, audio="a.wav", out=str(out))
    job = JobState(kind=command)
    job.start()
    proc = ec.EngineProcess(requests.one_shot_argv(fake_python), env=env, stdin_text=requests.to_line(request)).start()
    t0 = time.monotonic()
    rc = proc.run_sync(job.feed, should_cancel=(lambda: time.monotonic() - t0 > cancel_after) if cancel_after else None,
                       timeout=30)
    job.finish(rc, proc.stderr_tail(), proc.cancel_requested)
    return job, out, rc


def test_job_dict_shape():
    """The panel's settings -> the job dict (core/requests.py): the table's fields, the operator's own,
    the preferences; the one-shot engine reads the same JSON on stdin."""
    st = {"seed": 1, "sampler": "ddim", "steps": 10, "cfg_scale": 2.50001, "smooth": False}
    job = requests.job_dict("motion", st, {"weights": "/w", "device": "cpu", "dtype": "auto"}, audio="a.wav",
                            out="m.npz", fps=24.0)
    assert job == {"schema": "joyvasa.job", "version": 1, "command": "motion", "seed": 1, "sampler": "ddim",
                   "steps": 10, "cfg_scale": 2.5, "smooth": False, "audio": "a.wav", "out": "m.npz", "fps": 24.0,
                   "weights": "/w", "device": "cpu", "dtype": "auto"}
    assert "steps" not in requests.job_dict("motion", {**st, "steps": 0})          # 0 = the sampler's default
    assert requests.one_shot_argv("py") == ["py", "-m", "engine", "run", "--job", "-", "--progress", "json"]
    assert json.loads(requests.to_line(job)) == job
    assert ec.engine_argv("py", "doctor", ["--json"], weights="/w") == ["py", "-m", "engine", "doctor", "--json",
                                                                       "--weights", "/w"]


def test_precision_preference_reaches_generate_motion_cold_and_warm():
    """issue 19: Generate Motion got no --dtype (only animate did): the Precision preference joins
    every job that loads networks, and cold and warm send the same dict."""
    for command in ("motion", "animate"):
        job = requests.with_prefs({"command": command, "audio": "a.wav"}, {"dtype": "float16", "device": "cpu"})
        assert job["dtype"] == "float16" and job["device"] == "cpu"
    assert "dtype" not in requests.with_prefs({"command": "edit"}, {"dtype": "float16"})


def test_success(fake_python, tmp_path):
    job, out, rc = run(fake_python, tmp_path, "motion_ok")
    assert rc == 0 and job.state == "done", job.report_text()
    assert job.outputs["motion_npz"] == str(out) and out.exists()
    assert job.artifacts["motion_npz"] == str(out)
    assert job.device == "cpu" and job.progress == 1.0


def test_error_event(fake_python, tmp_path):
    job, _, rc = run(fake_python, tmp_path, "error_weights")
    assert rc == 1 and job.state == "failed"
    assert job.error_code == "weights_missing" and "weights not found" in job.message
    assert "looking for weights" in job.report_text()


def test_crash_shows_stderr_tail(fake_python, tmp_path):
    job, _, rc = run(fake_python, tmp_path, "crash")
    assert rc == 139 and job.state == "failed" and job.error_code == "crash"
    assert "simulated segfault" in job.message
    assert "Traceback" in job.report_text()


def test_hang_is_cancellable(fake_python, tmp_path):
    t0 = time.monotonic()
    job, _, rc = run(fake_python, tmp_path, "hang", cancel_after=0.5)
    assert job.state == "cancelled" and rc == 130
    assert time.monotonic() - t0 < 10


def test_unknown_protocol_major_is_refused(fake_python, tmp_path):
    job, _, rc = run(fake_python, tmp_path, "protocol_v2")
    assert job.state == "failed" and "protocol v2" in job.message


def test_stray_stdout_lines_are_not_fatal():
    proc = ec.EngineProcess([sys.executable, "-c", "print('hello from a library');"
                             "print('{\"v\":1,\"type\":\"done\",\"seq\":0,\"t\":0,\"outputs\":{}}')"]).start()
    job = JobState()
    job.start()
    rc = proc.run_sync(job.feed, timeout=20)
    job.finish(rc, proc.stderr_tail())
    assert job.state == "done"


def test_interpreter_detection(fake_python, tmp_path, monkeypatch):
    ok, version = ec.check_interpreter(sys.executable)
    assert ok and version.startswith("3.")
    ok, why = ec.check_interpreter(str(tmp_path / "missing"))
    assert not ok and "does not exist" in why
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", fake_python)
    path, why = ec.detect_interpreter(pref="")
    assert path == fake_python and "JOYVASA_ENGINE_PYTHON" in why
    path, why = ec.detect_interpreter(pref=sys.executable)
    assert path == sys.executable and "preferences" in why
    monkeypatch.delenv("JOYVASA_ENGINE_PYTHON")
    monkeypatch.setenv("PATH", str(tmp_path))
    path, why = ec.detect_interpreter(pref=str(tmp_path / "missing"))
    assert path is None and "Engine Python is set to" in why   # a wrong preference is named (#13)
    path, why = ec.detect_interpreter(pref="")
    assert path is None and "no engine Python found" in why


def test_find_engine_src_in_checkout():
    src = ec.find_engine_src()
    assert src is not None and (src / "engine" / "__main__.py").exists()


def test_clean_env_drops_blender_python_vars(monkeypatch):
    monkeypatch.setenv("PYTHONHOME", "/blender/python")
    env = ec.clean_env({"X": "1"})
    assert "PYTHONHOME" not in env and env["X"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_step_runner(tmp_path):
    r = ec.StepRunner([("one", [sys.executable, "-c", "print('a')"]),
                       ("two", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])]).start()
    r.join(20)
    assert r.done and r.error and "two failed (exit 3)" in r.error and "boom" in r.error


def test_summarize_doctor():
    report = {"ok": False, "versions": {"engine": "0.1.0", "python": "3.11", "torch": "2.13"},
              "devices": {"available": ["cpu"], "auto": "cpu", "auto_dtype": "float32",
                          "in_use": "CPU only: no GPU found (rendering takes seconds per frame)"},
              "weights": {"root": "/w", "files": {"spade_generator": {"present": False, "required": True},
                                                   "x": {"present": True, "required": True}},
                          "groups": {"joyvasa": {"loads": False, "error": "bad keys"}}},
              "next": ["download the weights"], "extra": 1}
    text = "\n".join(ec.summarize_doctor(report))
    for needle in ("engine 0.1.0", "torch 2.13", "Devices: cpu", "CPU only: no GPU found", "Missing: spade_generator", "joyvasa: does not load (bad keys)",
                   "download the weights", "extra: 1"):
        assert needle in text


def test_summarize_doctor_flags_synthetic_weights():
    """Check Engine's first line for a synthetic folder (the note is the contract's, as the engine's)."""
    from joyvasa_blender.core.contract.schema import SYNTHETIC_NOTE

    lines = ec.summarize_doctor({"ok": True, "synthetic": True, "weights": {"root": "/w"}, "next": []})
    assert SYNTHETIC_NOTE in lines[0] and not any(line.startswith("synthetic:") for line in lines)
    assert not any(SYNTHETIC_NOTE in line for line in ec.summarize_doctor({"ok": True, "synthetic": False}))


def test_engine_config_from_preference_values(tmp_path) -> None:
    """core/engine_config.py: the preferences' values -> one EngineConfig every engine start reads."""
    from joyvasa_blender.core.engine_config import EngineConfig

    cfg = EngineConfig.resolve(engine_python=str(tmp_path / "missing-python"), weights_dir=str(tmp_path),
                               device="cpu", dtype="float32", watchdog_s=7, keep_warm=False)
    assert cfg.python is None and "missing-python" in cfg.error and not cfg.keep_warm
    assert cfg.job_prefs() == {"weights": str(tmp_path), "device": "cpu", "dtype": "float32"}
    env = cfg.env()
    assert env["JOYVASA_WEIGHTS"] == str(tmp_path) and env["PYTHONPATH"] == str(cfg.engine_src)
