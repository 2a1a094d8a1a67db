"""Fixtures for tests that run inside a bpy wheel (one interpreter per Blender version).

The extension is built with tools/build_extension.py and installed with Blender's own
``extensions.package_install_files`` into a throw-away user folder, exactly like a user would.
The engine is tests/fake_engine.py behind a wrapper that looks like a Python interpreter,
unless a test asks for the real engine.
"""
from __future__ import annotations

import importlib.util
import math
import os
import shutil
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
TESTS = REPO / "tests"
#: a throw-away user folder; tests/blender/test_bpy_versions.run_inside passes one it removes itself
_OWN_HOME = None if "BLENDER_USER_RESOURCES" in os.environ else tempfile.mkdtemp(prefix="joyvasa_bhome_")
if _OWN_HOME:
    os.environ["BLENDER_USER_RESOURCES"] = _OWN_HOME

import bpy  # noqa: E402  (after BLENDER_USER_RESOURCES; makes addon_utils importable)
import addon_utils  # noqa: E402


MODULE = "bl_ext.user_default.joyvasa_blender"
#: the VRM add-on tests run in their own process, where the add-on is installed (tests/blender/test_rigs_bpy.py)
collect_ignore = [] if os.environ.get("JOYVASA_VRM_TESTS") == "1" else ["test_rigs_vrm.py"]
ENGINE_PY = os.environ.get("JOYVASA_TEST_ENGINE_PYTHON") or str(REPO / ".venv" / "bin" / "python")
HAS_SOUND = bpy.app.version >= (4, 3, 0)   # the 4.2.23 wheel has no Audaspace

#: A DeprecationWarning raised from the add-on's own modules (Blender warns at the caller's
#: frame, e.g. "'MovieStrip.frame_final_start' is expected to be removed in Blender 6.0") is an
#: error in these suites; warnings from Blender's own modules, pytest or numpy stay warnings.
#: Applied as a mark, so it wins over pytest's default "always show DeprecationWarning" filter.
ADDON_DEPRECATION_FILTER = r"error::DeprecationWarning:(bl_ext\.[^.]+\.)?joyvasa_blender(\..*)?$"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.filterwarnings(ADDON_DEPRECATION_FILTER))


_EXIT_STATUS = [0]


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without running bpy's C++ static destructors: after the summary is printed, stop
    the add-on's engine processes and ``os._exit`` with pytest's status. Why: at interpreter exit
    the bpy 4.5 module deadlocks in a global destructor waiting for its movie "delayed close"
    thread once a movie strip was made (seen: the inner run hung after "50 passed"), and bpy 4.2
    can segfault there (exit -11 after "85 passed") - a passing suite must not read as failed."""
    runtime = sys.modules.get(MODULE + ".runtime")
    if runtime is not None:
        try:
            runtime.cancel_all()
        except Exception as exc:  # noqa: BLE001 - still exit with the tests' status
            print(f"conftest: stopping the engine failed: {exc}", file=sys.stderr)
    if _OWN_HOME:   # a direct run's throw-away user folder (os._exit skips every atexit handler)
        shutil.rmtree(_OWN_HOME, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[0])


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    return _load_tool("build_extension").build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(extension_zip):
    res = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                   enable_on_install=True)
    assert res == {"FINISHED"}
    assert MODULE in {a.module for a in bpy.context.preferences.addons}
    return sys.modules[MODULE]


@pytest.fixture(scope="session")
def fake_python(tmp_path_factory) -> str:
    sys.path.insert(0, str(TESTS))
    import fake_engine
    python = ENGINE_PY if Path(ENGINE_PY).exists() else sys.executable
    return str(fake_engine.write_wrapper(tmp_path_factory.mktemp("fake") / "python", python))


def write_wav(path: Path, seconds: float = 2.0, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 * (1 + np.sin(2 * math.pi * 3 * t))                      # syllable-like bursts
    sig = 0.3 * env * np.sin(2 * math.pi * (140 + 40 * np.sin(2 * math.pi * 0.5 * t)) * t)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((sig * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def portrait_png() -> Path:
    """A portrait file on disk (the fake engine only checks the argument)."""
    return REPO / "examples" / "portrait.jpg"


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("audio") / "speech.wav")


ARKIT = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "mouthStretchLeft",
         "mouthStretchRight", "mouthPucker", "mouthFunnel", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
         "browDownLeft", "browDownRight"]


def build_scene(fps: int = 24):
    """Armature (root > neck > head, head pointing up) + a face mesh with ARKit shape keys, in a
    10-frame scene (tools/docs_keys_bpy.py builds it; the README picture keys the same rig)."""
    return _load_tool("docs_keys_bpy").build_scene(bpy, fps, ARKIT, frames=(1, 10))


@pytest.fixture()
def scene(installed, fake_python, monkeypatch):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(MODULE, default_set=True)
    monkeypatch.setenv("JOYVASA_ENGINE_PYTHON", fake_python)
    monkeypatch.delenv("JOYVASA_FAKE_TRANSCRIPT", raising=False)
    sc, rig, face = build_scene()
    runtime = sys.modules[MODULE + ".runtime"]
    runtime.stop_worker()          # each test starts with a cold engine (and its own fake transcript)
    runtime.WORKER = None
    runtime.LAST = None
    runtime.CURRENT = None
    return sc


def logged_commands(log: Path) -> list[list[str]]:
    """The engine jobs in a fake-engine argv log as command lines (``["motion", "--seed", "11", ...]``),
    whether each ran as a one-shot process (``engine run --job -``: its ``job`` line), as a request
    to the warm worker, or as a plain command (``doctor --json``)."""
    import json

    from fake_engine import job_argv

    out = []
    for line in log.read_text().splitlines():
        item = json.loads(line)
        if item[0] in ("serve", "run"):
            continue
        if item[0] == "serve-request":
            if item[1] == "run":
                out.append([item[2], *job_argv(item[3] or {})])
        elif item[0] == "job":
            out.append([item[1].get("command"), *job_argv(item[1])])
        else:
            out.append(item)
    return out


def engine_processes(log: Path) -> int:
    """How many engine processes were started (one-shot runs and warm workers)."""
    import json

    return sum(1 for line in log.read_text().splitlines() if json.loads(line)[0] not in ("serve-request", "job"))


def addon(name: str):
    return sys.modules[f"{MODULE}.{name}"]


def scene_fingerprint() -> dict:
    """Everything a failed/cancelled run must leave untouched."""
    scene = bpy.context.scene
    coll = scene.sequence_editor
    n_strips = 0 if coll is None else len(coll.strips_all if hasattr(coll, "strips_all") else coll.sequences_all)
    return {"actions": sorted(a.name for a in bpy.data.actions), "objects": sorted(o.name for o in bpy.data.objects),
            "frame_end": scene.frame_end, "strips": n_strips,
            "rig_action": getattr(getattr(bpy.data.objects["Rig"], "animation_data", None), "action", None)}


@pytest.fixture(scope="session")
def rigify_blend(installed, tmp_path_factory) -> Path:
    """A .blend with two rigs generated by the bundled Rigify from its human metarig: RIG-legacy
    (as it comes) and RIG-modular (after Rigify's Upgrade Face Rig), made once per session in
    their own bpy process (tools/rig_characters_bpy.py), so Rigify never loads into the tests."""
    return _load_tool("rig_characters_bpy").build_rigify_blend(tmp_path_factory.mktemp("rigify") / "rigify.blend")
