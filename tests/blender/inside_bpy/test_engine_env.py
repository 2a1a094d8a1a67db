"""Create Engine Environment inside Blender: the torch build chosen per platform/GPU (faked
machines: no GPU here) and the command lines the button runs; the Torch Build override."""
from __future__ import annotations

import types
from pathlib import Path

import bpy
import pytest

from conftest import MODULE, addon

NV = "NVIDIA GeForce RTX 4070"


def _machines():
    tb = addon("core.torch_build")
    return {
        "windows-nvidia": (tb.Machine("Windows", "AMD64", tb.NvidiaInfo((NV,), "566.36", (12, 7))),
                           "https://download.pytorch.org/whl/cu126"),
        "linux-nvidia": (tb.Machine("Linux", "x86_64", tb.NvidiaInfo((NV,), "580.65", (13, 0))),
                         "https://download.pytorch.org/whl/cu130"),
        "linux-rocm": (tb.Machine("Linux", "x86_64", None, rocm=True), "https://download.pytorch.org/whl/rocm6.4"),
        "macos-arm64": (tb.Machine("Darwin", "arm64"), None),
        "cpu-only": (tb.Machine("Linux", "x86_64"), "https://download.pytorch.org/whl/cpu"),
    }


@pytest.fixture()
def engine_src(scene, tmp_path):
    src = tmp_path / "engine_src"
    (src / "engine").mkdir(parents=True)
    (src / "engine" / "__main__.py").write_text("")
    (src / "requirements.txt").write_text("torch>=2.2\nnumpy>=1.24\n")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_src, prefs.torch_build = str(src), "auto"
    yield src
    prefs.engine_src, prefs.torch_build = "", "auto"
    addon("runtime").MACHINE = None


def test_create_engine_environment(engine_src):
    """The button itself, run for real: venv + pip install -r requirements (a list without torch
    and without packages here: no network, so no torch step), then Engine Python is filled."""
    (engine_src / "requirements.txt").write_text("# nothing\n")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = ""
    try:
        assert bpy.ops.joyvasa.install_engine() == {"FINISHED"}     # synchronous in background mode
        inst = addon("runtime").INSTALLER
        assert inst.done and inst.error is None, inst.log[-10:]
        assert [label for label, _ in inst.steps] == ["Creating virtual environment", "Installing engine requirements"]
        assert Path(prefs.engine_python).exists() and "venv" in prefs.engine_python
        ok, _version = addon("core.engine_client").check_interpreter(prefs.engine_python)
        assert ok
    finally:
        prefs.engine_python = ""


@pytest.mark.parametrize("case", ["windows-nvidia", "linux-nvidia", "linux-rocm", "macos-arm64", "cpu-only"])
def test_install_command_lines_per_platform(engine_src, case):
    machine, url = _machines()[case]
    addon("runtime").MACHINE = machine
    choice, steps = addon("engine_setup").install_plan(bpy.context)
    assert choice.index_url == url
    torch_step = steps[1][1]
    assert torch_step[3:6] == ["install", "--progress-bar", "off"] and torch_step[6] == "torch>=2.2"
    assert torch_step[7:] == ([] if url is None else ["--index-url", url])
    assert steps[0][1][-2] == "--clear" and Path(steps[0][1][-1]).name == "venv"
    assert steps[2][1][-2:] == ["-r", str(engine_src / "requirements.txt")]
    if "nvidia" in case:
        assert NV in choice.reason


def test_torch_build_preference_overrides_auto(engine_src):
    addon("runtime").MACHINE = _machines()["windows-nvidia"][0]
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.torch_build = "cpu"
    choice, steps = addon("engine_setup").install_plan(bpy.context)
    assert choice.build == "cpu" and steps[1][1][-1] == "https://download.pytorch.org/whl/cpu"


def test_preferences_draw_the_plan(engine_src):
    """The preferences panel draws without error with the plan (torch line + pip command)."""
    addon("runtime").MACHINE = _machines()["linux-nvidia"][0]
    prefs = bpy.context.preferences.addons[MODULE].preferences
    lines: list[str] = []

    class Layout:
        def __getattr__(self, name):
            return lambda *a, **kw: self if name in ("row", "column", "box", "split") else \
                lines.append(kw.get("text", "")) if name == "label" else None

    addon("prefs").draw_install_plan(Layout(), bpy.context)
    assert any(line.startswith("Torch: torch cu130 from https://download.pytorch.org/whl/cu130") for line in lines), lines
    assert any("--index-url https://download.pytorch.org/whl/cu130" in line for line in lines), lines


@pytest.mark.parametrize("warm", [True, False])
def test_check_engine_warns_about_a_cpu_torch_on_a_gpu_machine(engine_src, monkeypatch, warm):
    """Check Engine with doctor's "CPU only ... NVIDIA GPU is present" (fake engine): a warning, the
    line first in the box, and the one-click fix (Recreate Engine Environment) beside it."""
    monkeypatch.setenv("JOYVASA_FAKE_GPU_WARNING", "1")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_src, prefs.keep_warm = "", warm        # the fake engine's own sources
    try:
        assert bpy.ops.joyvasa.check_engine() == {"FINISHED"}
        doc = addon("runtime").DOCTOR
        assert doc["ok"] and doc["gpu_warning"] is True, doc
        assert "has no CUDA although an NVIDIA GPU is present" in doc["device"] and doc["device"] in doc["text"]
        calls: list[tuple[str, str]] = []

        class Layout:
            def __getattr__(self, name):
                def call(*a, **kw):
                    if name in ("label", "operator"):
                        calls.append((name, kw.get("text", a[0] if a else "")))
                    return self
                return call

        type(prefs).draw(types.SimpleNamespace(layout=Layout(), **{p: getattr(prefs, p) for p in prefs.bl_rna.properties.keys()
                                                                  if p != "rna_type"}), bpy.context)
        fix = calls.index(("operator", "Recreate Engine Environment"))
        assert "NVIDIA GPU is present" in calls[fix - 1][1], calls
    finally:
        prefs.keep_warm = True
        addon("runtime").stop_worker()
        addon("runtime").DOCTOR = {}
