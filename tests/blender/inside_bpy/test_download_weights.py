"""Download Weights inside bpy: the preferences' button runs the real engine's ``engine fetch``
against the stand-in hub on 127.0.0.1 (tests/hub_server.py) and fills the Weights preference;
with Blender's Allow Online Access off it refuses and shows the manual route.
Run from tests/blender/test_download_weights_bpy.py (one bpy version per Python)."""
from __future__ import annotations

import os
import shutil
import sys
import time
import types
from pathlib import Path

import bpy
import pytest

from conftest import ENGINE_PY, MODULE, TESTS, addon

WEIGHTS = os.environ.get("JOYVASA_TEST_WEIGHTS", "")
needs_engine = pytest.mark.skipif(bool(os.environ.get("JOYVASA_SKIP_REAL_ENGINE")) or not WEIGHTS,
                                  reason="the real fetch needs JOYVASA_TEST_WEIGHTS (tiny synthetic weights)")


def run_op(op, **kw):
    try:
        return op(**kw), ""
    except RuntimeError as exc:   # background mode: an ERROR report raises
        return {"CANCELLED"}, str(exc)


@pytest.fixture()
def prefs(installed, monkeypatch):
    p = bpy.context.preferences.addons[MODULE].preferences
    old = (p.weights_dir, p.download_dir, bpy.context.preferences.system.use_online_access)
    p.weights_dir = ""
    addon("runtime").FETCH = None
    yield p
    p.weights_dir, p.download_dir, bpy.context.preferences.system.use_online_access = old
    addon("runtime").FETCH = None


@pytest.fixture()
def hub():
    sys.path.insert(0, str(TESTS))
    try:
        from hub_server import HubServer, official_layout
    finally:
        sys.path.pop(0)
    with HubServer(official_layout(Path(WEIGHTS))) as server:
        yield server


@pytest.fixture()
def dest(prefs, hub, tmp_path, monkeypatch):
    """The real engine, pointed at the stand-in hub, downloading into an empty weights folder."""
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    bpy.context.preferences.system.use_online_access = True
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(Path(WEIGHTS) / "models.yaml", folder)   # tiny sizes; the official repositories hold none
    prefs.download_dir = str(folder)
    return folder


def test_refused_when_online_access_is_off_with_the_manual_route(prefs, tmp_path, monkeypatch):
    """Nothing is downloaded (the engine runs with HF_HUB_OFFLINE=1, pointed at an address that would
    fail anyway); the preferences list every file and where it goes."""
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", ENGINE_PY)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    bpy.context.preferences.system.use_online_access = False
    assert bpy.app.online_access is False
    prefs.download_dir = str(tmp_path / "w")
    res, msg = run_op(bpy.ops.joyvasa.download_weights)
    assert res == {"CANCELLED"} and "Allow Online Access" in msg and "by hand" in msg
    job = addon("runtime").FETCH
    assert job.progress.code == "online_access_off" and job.proc.returncode == 1
    lines = job.progress.lines()
    assert any("Manual route" in ln for ln in lines)
    assert any("motion_generator_hubert_chinese.pt  ->  DIR/JoyVASA/motion_generator/" in ln for ln in lines)
    assert not (tmp_path / "w").exists() and prefs.weights_dir == ""


def test_preferences_show_progress_and_cancel_while_downloading(prefs):
    from test_panels_draw import Layout

    core = addon("core.weights_fetch")
    progress = core.FetchProgress("/tmp/w")
    progress.apply({"type": "plan", "download_files": 9, "download_bytes": 2**30, "free_bytes": 2**34, "files": [{}] * 9})
    progress.apply({"type": "progress", "stage": "download", "done": 2**29, "total": 2**30, "eta_s": 42,
                    "file": "JoyVASA/x.pt", "files_done": 5, "files_total": 9})
    fake_proc = types.SimpleNamespace()
    addon("runtime").FETCH = addon("runtime").Fetch(fake_proc, progress)
    log = []
    addon("ops_weights").draw_download(Layout(log), prefs)
    assert ("operator", "joyvasa.cancel_download") in log
    assert any(kind == "progress" and "ETA 42 s" in text for kind, text in log)
    assert any(kind == "label" and "1.0 GiB" in text and "free: 16.0 GiB" in text for kind, text in log)


@needs_engine
def test_download_weights_fills_the_weights_preference(prefs, hub, dest, tmp_path):
    assert bpy.ops.joyvasa.download_weights(plan_only=True) == {"FINISHED"}      # Check Download Size
    job = addon("runtime").FETCH
    assert job.progress.plan["download_files"] == 9 and job.progress.plan["free_bytes"] > 0
    assert sorted(p.name for p in dest.iterdir()) == ["models.yaml"] and prefs.weights_dir == ""

    assert bpy.ops.joyvasa.download_weights() == {"FINISHED"}
    job = addon("runtime").FETCH
    assert job.progress.state == "done", job.progress.lines()
    assert job.progress.done_bytes == job.progress.total_bytes == job.progress.plan["download_bytes"]
    assert Path(prefs.weights_dir) == dest
    assert (dest / "liveportrait/base_models/spade_generator.pth").read_bytes() == \
        (Path(WEIGHTS) / "liveportrait/base_models/spade_generator.pth").read_bytes()
    assert not (tmp_path / ".weights.joyvasa-fetch").exists()
    assert any(m == "GET" and p.startswith("/cdn/") for m, p, _r in hub.requests)


@needs_engine
def test_cancel_from_the_preferences_leaves_nothing_half_written(prefs, hub, dest, tmp_path):
    """The interactive path: the preferences' timer pumps the events, Cancel Download stops mid-file."""
    ops = addon("ops_weights")
    spade = "liveportrait/base_models/spade_generator.pth"
    hub.bytes_per_s = 2e6                                    # ~1.6 s for the tiny spade generator
    assert ops.start_fetch(bpy.context) is None
    job = addon("runtime").FETCH
    cancelled = False
    deadline = time.monotonic() + 120
    while ops._poll_fetch() is not None:                     # what bpy.app.timers would call
        assert time.monotonic() < deadline, job.progress.lines()
        if not cancelled and job.progress.file == spade and 0 < job.progress.done_bytes < job.progress.total_bytes:
            assert bpy.ops.joyvasa.cancel_download() == {"FINISHED"}
            cancelled = True
        time.sleep(0.05)
    assert cancelled and job.progress.state == "cancelled", job.progress.lines()
    assert not (dest / spade).exists() and prefs.weights_dir == ""
    assert list((tmp_path / ".weights.joyvasa-fetch").rglob("spade_generator.pth.*.part"))
    hub.bytes_per_s = None
    assert bpy.ops.joyvasa.download_weights() == {"FINISHED"}   # resumes
    assert Path(prefs.weights_dir) == dest and (dest / spade).is_file()
    assert not (tmp_path / ".weights.joyvasa-fetch").exists()
